//! A launch-template version's launch data, copied whole into a new
//! version with another image: how `set_image` (and a blue/green twin)
//! pins an image by number.
//!
//! Why not `SourceVersion` plus `ImageId` alone: moto ignores
//! `SourceVersion` (the new version would carry nothing but the image),
//! and a version that spells out all its data is what a reader of the
//! template sees anyway. EC2 answers with `ResponseLaunchTemplateData` and
//! takes `RequestLaunchTemplateData`, two type trees with the same fields;
//! [`request_data`] moves every field it knows from one to the other and
//! then checks that nothing is left: a field kiln does not copy yet (an
//! `InstanceRequirements`, elastic GPUs, ENA Express, a newer SDK field)
//! refuses the copy, naming it, instead of silently launching instances
//! without it.

use aws_sdk_ec2::types::{
    CapacityReservationTarget, ConnectionTrackingSpecificationRequest, CreditSpecificationRequest,
    LaunchTemplateBlockDeviceMapping, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateCapacityReservationSpecificationRequest, LaunchTemplateCpuOptionsRequest,
    LaunchTemplateEbsBlockDevice, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateEnclaveOptionsRequest, LaunchTemplateHibernationOptionsRequest,
    LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMaintenanceOptionsRequest, LaunchTemplateInstanceMarketOptionsRequest,
    LaunchTemplateInstanceMetadataOptions, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecification,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateLicenseConfigurationRequest, LaunchTemplateNetworkPerformanceOptionsRequest,
    LaunchTemplatePlacementRequest, LaunchTemplatePrivateDnsNameOptionsRequest,
    LaunchTemplateSpotMarketOptionsRequest, LaunchTemplateTagSpecificationRequest,
    LaunchTemplateVersion, LaunchTemplatesMonitoringRequest, RequestLaunchTemplateData,
    ResponseLaunchTemplateData,
};

use crate::error::{CloudError, Result};
use crate::ids::ImageId;

/// Collects what was left uncopied, by path.
#[derive(Default)]
struct Left(Vec<String>);

impl Left {
    /// Records `what` if `rest` (a value with every copied field taken
    /// out) still differs from `empty`.
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, rest: &T, empty: &T) {
        if rest != empty {
            self.0.push(format!("{what}: {rest:?}"));
        }
    }
}

/// The launch data of `version` with the image replaced by `image`, every
/// other field as it was. [`CloudError::Invalid`] naming the fields kiln
/// cannot copy, if the version sets any.
pub fn request_data(
    version: &LaunchTemplateVersion,
    image: &ImageId,
) -> Result<RequestLaunchTemplateData> {
    let mut d = version
        .launch_template_data
        .clone()
        .unwrap_or_else(|| ResponseLaunchTemplateData::builder().build());
    let mut left = Left::default();
    d.image_id = None;
    let mut r = RequestLaunchTemplateData::builder()
        .image_id(image.as_str())
        .set_kernel_id(d.kernel_id.take())
        .set_ebs_optimized(d.ebs_optimized.take())
        .set_instance_type(d.instance_type.take())
        .set_key_name(d.key_name.take())
        .set_ram_disk_id(d.ram_disk_id.take())
        .set_disable_api_termination(d.disable_api_termination.take())
        .set_disable_api_stop(d.disable_api_stop.take())
        .set_instance_initiated_shutdown_behavior(d.instance_initiated_shutdown_behavior.take())
        .set_user_data(d.user_data.take())
        .set_security_group_ids(d.security_group_ids.take())
        .set_security_groups(d.security_groups.take());
    if let Some(p) = d.iam_instance_profile.take() {
        r = r.iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .set_arn(p.arn)
                .set_name(p.name)
                .build(),
        );
    }
    for m in d.block_device_mappings.take().unwrap_or_default() {
        r = r.block_device_mappings(block_device(m, &mut left));
    }
    for n in d.network_interfaces.take().unwrap_or_default() {
        r = r.network_interfaces(network_interface(n, &mut left));
    }
    for t in d.tag_specifications.take().unwrap_or_default() {
        r = r.tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .set_resource_type(t.resource_type)
                .set_tags(t.tags)
                .build(),
        );
    }
    if let Some(m) = d.metadata_options.take() {
        r = r.metadata_options(metadata(m, &mut left));
    }
    if let Some(m) = d.monitoring.take() {
        r = r.monitoring(
            LaunchTemplatesMonitoringRequest::builder()
                .set_enabled(m.enabled)
                .build(),
        );
    }
    if let Some(p) = d.placement.take() {
        r = r.placement(
            LaunchTemplatePlacementRequest::builder()
                .set_availability_zone(p.availability_zone)
                .set_availability_zone_id(p.availability_zone_id)
                .set_affinity(p.affinity)
                .set_group_name(p.group_name)
                .set_host_id(p.host_id)
                .set_tenancy(p.tenancy)
                .set_spread_domain(p.spread_domain)
                .set_host_resource_group_arn(p.host_resource_group_arn)
                .set_partition_number(p.partition_number)
                .set_group_id(p.group_id)
                .build(),
        );
    }
    if let Some(c) = d.credit_specification.take() {
        r = r.credit_specification(
            CreditSpecificationRequest::builder()
                .set_cpu_credits(c.cpu_credits)
                .build(),
        );
    }
    if let Some(c) = d.cpu_options.take() {
        r = r.cpu_options(
            LaunchTemplateCpuOptionsRequest::builder()
                .set_core_count(c.core_count)
                .set_threads_per_core(c.threads_per_core)
                .set_amd_sev_snp(c.amd_sev_snp)
                .set_nested_virtualization(c.nested_virtualization)
                .build(),
        );
    }
    if let Some(p) = d.private_dns_name_options.take() {
        r = r.private_dns_name_options(
            LaunchTemplatePrivateDnsNameOptionsRequest::builder()
                .set_hostname_type(p.hostname_type)
                .set_enable_resource_name_dns_a_record(p.enable_resource_name_dns_a_record)
                .set_enable_resource_name_dns_aaaa_record(p.enable_resource_name_dns_aaaa_record)
                .build(),
        );
    }
    if let Some(m) = d.maintenance_options.take() {
        r = r.maintenance_options(
            LaunchTemplateInstanceMaintenanceOptionsRequest::builder()
                .set_auto_recovery(m.auto_recovery)
                .build(),
        );
    }
    if let Some(h) = d.hibernation_options.take() {
        r = r.hibernation_options(
            LaunchTemplateHibernationOptionsRequest::builder()
                .set_configured(h.configured)
                .build(),
        );
    }
    if let Some(e) = d.enclave_options.take() {
        r = r.enclave_options(
            LaunchTemplateEnclaveOptionsRequest::builder()
                .set_enabled(e.enabled)
                .build(),
        );
    }
    if let Some(c) = d.capacity_reservation_specification.take() {
        r = r.capacity_reservation_specification(
            LaunchTemplateCapacityReservationSpecificationRequest::builder()
                .set_capacity_reservation_preference(c.capacity_reservation_preference)
                .set_capacity_reservation_target(c.capacity_reservation_target.map(|t| {
                    CapacityReservationTarget::builder()
                        .set_capacity_reservation_id(t.capacity_reservation_id)
                        .set_capacity_reservation_resource_group_arn(
                            t.capacity_reservation_resource_group_arn,
                        )
                        .build()
                }))
                .build(),
        );
    }
    for l in d.license_specifications.take().unwrap_or_default() {
        r = r.license_specifications(
            LaunchTemplateLicenseConfigurationRequest::builder()
                .set_license_configuration_arn(l.license_configuration_arn)
                .build(),
        );
    }
    if let Some(m) = d.instance_market_options.take() {
        r = r.instance_market_options(
            LaunchTemplateInstanceMarketOptionsRequest::builder()
                .set_market_type(m.market_type)
                .set_spot_options(m.spot_options.map(|s| {
                    LaunchTemplateSpotMarketOptionsRequest::builder()
                        .set_max_price(s.max_price)
                        .set_spot_instance_type(s.spot_instance_type)
                        .set_block_duration_minutes(s.block_duration_minutes)
                        .set_valid_until(s.valid_until)
                        .set_instance_interruption_behavior(s.instance_interruption_behavior)
                        .build()
                }))
                .build(),
        );
    }
    if let Some(n) = d.network_performance_options.take() {
        r = r.network_performance_options(
            LaunchTemplateNetworkPerformanceOptionsRequest::builder()
                .set_bandwidth_weighting(n.bandwidth_weighting)
                .build(),
        );
    }
    empty(&mut d.elastic_gpu_specifications);
    empty(&mut d.elastic_inference_accelerators);
    empty(&mut d.secondary_interfaces);
    left.check(
        "launch data",
        &d,
        &ResponseLaunchTemplateData::builder().build(),
    );
    if !left.0.is_empty() {
        return Err(CloudError::invalid(
            "launch template",
            format!(
                "version {} of {} sets launch data kiln cannot copy into a new version yet \
                 (so it cannot pin another image without losing it): {}",
                version.version_number.unwrap_or_default(),
                version
                    .launch_template_name
                    .as_deref()
                    .or(version.launch_template_id.as_deref())
                    .unwrap_or("the launch template"),
                left.0.join("; ")
            ),
        ));
    }
    Ok(r.build())
}

fn block_device(
    mut m: LaunchTemplateBlockDeviceMapping,
    left: &mut Left,
) -> LaunchTemplateBlockDeviceMappingRequest {
    let ebs = m.ebs.take().map(|mut e| {
        let req = LaunchTemplateEbsBlockDeviceRequest::builder()
            .set_encrypted(e.encrypted.take())
            .set_delete_on_termination(e.delete_on_termination.take())
            .set_iops(e.iops.take())
            .set_kms_key_id(e.kms_key_id.take())
            .set_snapshot_id(e.snapshot_id.take())
            .set_volume_size(e.volume_size.take())
            .set_volume_type(e.volume_type.take())
            .set_throughput(e.throughput.take())
            .set_volume_initialization_rate(e.volume_initialization_rate.take())
            .set_ebs_card_index(e.ebs_card_index.take())
            .build();
        left.check(
            "block device ebs",
            &e,
            &LaunchTemplateEbsBlockDevice::builder().build(),
        );
        req
    });
    let req = LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(m.device_name.take())
        .set_virtual_name(m.virtual_name.take())
        .set_no_device(m.no_device.take())
        .set_ebs(ebs)
        .build();
    left.check(
        "block device mapping",
        &m,
        &LaunchTemplateBlockDeviceMapping::builder().build(),
    );
    req
}

fn network_interface(
    mut n: LaunchTemplateInstanceNetworkInterfaceSpecification,
    left: &mut Left,
) -> LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
    let tracking = n.connection_tracking_specification.take().map(|c| {
        ConnectionTrackingSpecificationRequest::builder()
            .set_tcp_established_timeout(c.tcp_established_timeout)
            .set_udp_stream_timeout(c.udp_stream_timeout)
            .set_udp_timeout(c.udp_timeout)
            .build()
    });
    empty(&mut n.ipv6_addresses);
    let req = LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
        .set_associate_carrier_ip_address(n.associate_carrier_ip_address.take())
        .set_associate_public_ip_address(n.associate_public_ip_address.take())
        .set_delete_on_termination(n.delete_on_termination.take())
        .set_description(n.description.take())
        .set_device_index(n.device_index.take())
        .set_groups(n.groups.take())
        .set_interface_type(n.interface_type.take())
        .set_ipv6_address_count(n.ipv6_address_count.take())
        .set_network_interface_id(n.network_interface_id.take())
        .set_private_ip_address(n.private_ip_address.take())
        .set_private_ip_addresses(n.private_ip_addresses.take())
        .set_secondary_private_ip_address_count(n.secondary_private_ip_address_count.take())
        .set_subnet_id(n.subnet_id.take())
        .set_network_card_index(n.network_card_index.take())
        .set_ipv4_prefix_count(n.ipv4_prefix_count.take())
        .set_ipv6_prefix_count(n.ipv6_prefix_count.take())
        .set_primary_ipv6(n.primary_ipv6.take())
        .set_ena_queue_count(n.ena_queue_count.take())
        .set_connection_tracking_specification(tracking)
        .build();
    {
        let mut rest = n;
        empty(&mut rest.ipv4_prefixes);
        empty(&mut rest.ipv6_prefixes);
        left.check(
            "network interface",
            &rest,
            &LaunchTemplateInstanceNetworkInterfaceSpecification::builder().build(),
        );
    }
    req
}

/// An empty list is as good as none.
fn empty<T>(v: &mut Option<Vec<T>>) {
    if v.as_ref().is_some_and(Vec::is_empty) {
        *v = None;
    }
}

fn metadata(
    mut m: LaunchTemplateInstanceMetadataOptions,
    left: &mut Left,
) -> LaunchTemplateInstanceMetadataOptionsRequest {
    // `state` (pending/applied) is EC2's, not launch data.
    m.state = None;
    let req = LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .set_http_tokens(m.http_tokens.take())
        .set_http_put_response_hop_limit(m.http_put_response_hop_limit.take())
        .set_http_endpoint(m.http_endpoint.take())
        .set_http_protocol_ipv6(m.http_protocol_ipv6.take())
        .set_instance_metadata_tags(m.instance_metadata_tags.take())
        .build();
    left.check(
        "metadata options",
        &m,
        &LaunchTemplateInstanceMetadataOptions::builder().build(),
    );
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        InstanceRequirements, InstanceType, LaunchTemplateHttpTokensState,
        LaunchTemplateTagSpecification, ResourceType, Tag, VolumeType,
    };

    fn version(data: ResponseLaunchTemplateData) -> LaunchTemplateVersion {
        LaunchTemplateVersion::builder()
            .launch_template_id("lt-1")
            .launch_template_name("web")
            .version_number(3)
            .launch_template_data(data)
            .build()
    }

    fn full() -> ResponseLaunchTemplateData {
        ResponseLaunchTemplateData::builder()
            .image_id("ami-old")
            .instance_type(InstanceType::T3Small)
            .security_group_ids("sg-1")
            .user_data("IyEvYmluL3NoCg==")
            .block_device_mappings(
                LaunchTemplateBlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        LaunchTemplateEbsBlockDevice::builder()
                            .volume_size(8)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            )
            .network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .associate_public_ip_address(false)
                    .groups("sg-1")
                    .build(),
            )
            .metadata_options(
                LaunchTemplateInstanceMetadataOptions::builder()
                    .state(aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptionsState::Applied)
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(
                LaunchTemplateTagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("svc").value("web").build())
                    .build(),
            )
            .build()
    }

    #[test]
    fn everything_is_copied_but_the_image() {
        let r = request_data(&version(full()), &ImageId::from("ami-new")).expect("copies");
        assert_eq!(r.image_id(), Some("ami-new"));
        assert_eq!(r.instance_type(), Some(&InstanceType::T3Small));
        assert_eq!(r.security_group_ids(), ["sg-1"]);
        assert_eq!(r.user_data(), Some("IyEvYmluL3NoCg=="));
        let ebs = r.block_device_mappings()[0].ebs().expect("ebs");
        assert_eq!((ebs.volume_size(), ebs.encrypted()), (Some(8), Some(true)));
        assert_eq!(r.network_interfaces()[0].groups(), ["sg-1"]);
        assert_eq!(
            r.metadata_options().and_then(|m| m.http_tokens()),
            Some(&LaunchTemplateHttpTokensState::Required)
        );
        assert_eq!(r.tag_specifications()[0].tags()[0].key(), Some("svc"));
    }

    #[test]
    fn data_kiln_cannot_copy_is_refused_by_name() {
        let mut d = full();
        d.instance_requirements = Some(InstanceRequirements::builder().build());
        let e = request_data(&version(d), &ImageId::from("ami-new")).expect_err("refused");
        assert!(e.is_bad_input(), "{e}");
        let s = e.to_string();
        assert!(s.contains("instance_requirements"), "{s}");
        assert!(s.contains("version 3 of web"), "{s}");
        let mut d = full();
        if let Some(e) = d
            .block_device_mappings
            .as_mut()
            .and_then(|b| b[0].ebs.as_mut())
        {
            e.iops = Some(3000);
        }
        assert!(request_data(&version(d), &ImageId::from("ami-new")).is_ok());
    }

    #[test]
    fn a_version_without_data_gets_just_the_image() {
        let v = LaunchTemplateVersion::builder().version_number(1).build();
        let r = request_data(&v, &ImageId::from("ami-new")).expect("copies");
        assert_eq!(r.image_id(), Some("ami-new"));
        assert_eq!(r.instance_type(), None);
    }
}

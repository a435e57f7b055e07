//! Counts of everything a bake can leave behind, so a test can assert
//! "nothing leaked" as `before == after`. Counted by the kiln run tag where
//! the resource carries one, and in total otherwise (moto seeds public AMIs
//! and their snapshots; a before/after comparison cancels those out).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::Moto;

/// What exists in moto right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Instances tagged `kiln:bake` and not terminated.
    pub instances: usize,
    /// Security groups tagged `kiln:bake`.
    pub security_groups: usize,
    pub key_pairs: usize,
    /// Objects in the bucket (all prefixes).
    pub objects: usize,
    /// All snapshots moto lists (seeded ones included).
    pub snapshots: usize,
    /// Snapshots tagged `kiln:bake`.
    pub kiln_snapshots: usize,
    /// Images owned by the account.
    pub images: usize,
}

impl Census {
    /// A census of [`crate::REGION`] and of each of `others` (where image
    /// copies go), by region. Only images and snapshots differ between
    /// regions for a bake: the bucket is the same in each.
    pub async fn regions(
        moto: &Moto,
        key: &str,
        secret: &str,
        bucket: &str,
        others: &[&str],
    ) -> BTreeMap<String, Census> {
        let s3 = moto.s3(key, secret).await;
        let mut all = BTreeMap::new();
        for region in std::iter::once(crate::REGION).chain(others.iter().copied()) {
            let ec2 = moto.ec2_in(key, secret, region).await;
            all.insert(region.to_owned(), Census::take(&ec2, &s3, bucket).await);
        }
        all
    }

    pub async fn take(ec2: &aws_sdk_ec2::Client, s3: &aws_sdk_s3::Client, bucket: &str) -> Census {
        let run = || {
            Filter::builder()
                .name("tag-key")
                .values("kiln:bake")
                .build()
        };
        let instances = ec2
            .describe_instances()
            .filters(run())
            .send()
            .await
            .expect("DescribeInstances")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                i.state().and_then(|s| s.name())
                    != Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
            })
            .count();
        let security_groups = ec2
            .describe_security_groups()
            .filters(run())
            .send()
            .await
            .expect("DescribeSecurityGroups")
            .security_groups()
            .len();
        let key_pairs = ec2
            .describe_key_pairs()
            .send()
            .await
            .expect("DescribeKeyPairs")
            .key_pairs()
            .len();
        let snaps = ec2
            .describe_snapshots()
            .send()
            .await
            .expect("DescribeSnapshots");
        let snapshots = snaps.snapshots().len();
        let kiln_snapshots = snaps
            .snapshots()
            .iter()
            .filter(|s| s.tags().iter().any(|t| t.key() == Some("kiln:bake")))
            .count();
        let images = ec2
            .describe_images()
            .owners("self")
            .send()
            .await
            .expect("DescribeImages")
            .images()
            .len();
        let objects = match s3.list_objects_v2().bucket(bucket).send().await {
            Ok(o) => o.contents().len(),
            Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchBucket") => {
                0
            }
            Err(e) => panic!("ListObjectsV2 {bucket}: {e:?}"),
        };
        Census {
            instances,
            security_groups,
            key_pairs,
            objects,
            snapshots,
            kiln_snapshots,
            images,
        }
    }
}

//! Typed ids and tags. An id is whatever the backend calls the thing
//! (`ami-0abc…` on aws, `img-3f2a…` locally); the type says which thing it
//! is, so an instance id can never be passed where an image id is expected.

use std::collections::BTreeMap;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A machine image: an AMI id, or a local image id (`img-<hex>`).
    ImageId
);
id_type!(
    /// An instance: a builder or a group member (`i-…`).
    InstanceId
);
id_type!(
    /// One bake (or roll) run. Every resource a run creates carries it in the
    /// [`tags::RUN`] tag, so cleanup and `gc` can find them.
    RunId
);
id_type!(
    /// An instance group (aws: an Auto Scaling group; local: a supervised set).
    GroupName
);
id_type!(
    /// A load balancer's target set (aws: a target group ARN).
    TargetGroupId
);
id_type!(
    /// A load balancer's listener (aws: a listener ARN; local: the
    /// balancer's name, the group's).
    ListenerId
);
id_type!(
    /// A region (aws: `eu-west-1`; local: `local`).
    Region
);
id_type!(
    /// An account an image is shared with (aws: 12 digits).
    AccountId
);

impl RunId {
    /// A fresh run id: time-ordered and unique enough for one machine's runs.
    pub fn generate() -> RunId {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        RunId(format!("run-{secs}-{:08x}", fastrand::u32(..)))
    }
}

/// Tags as the cloud stores them: sorted, so serialisation is stable.
pub type Tags = BTreeMap<String, String>;

/// Tag keys kiln writes. Values never contain secrets.
pub mod tags {
    /// The input digest of a baked image (the content address).
    pub const DIGEST: &str = "kiln:digest";
    /// The run that created a resource.
    pub const RUN: &str = "kiln:bake";
    /// The recipe's image name.
    pub const NAME: &str = "kiln:name";
    /// The resolved base image id.
    pub const BASE: &str = "kiln:base";
    /// The parent image (the previous image with the same name), if any.
    pub const PARENT: &str = "kiln:parent";
    /// The searchd version installed in the image.
    pub const SEARCHD_VERSION: &str = "kiln:searchd-version";
    /// The sha256 of the installed snapshot (searchd's index digest).
    pub const INDEX_DIGEST: &str = "kiln:index-digest";
    /// Creation time, RFC 3339 UTC.
    pub const CREATED: &str = "kiln:created";
    /// How far the bake that made an image got: [`STATE_BAKING`] from
    /// creation, [`STATE_COMPLETE`] once everything was published (the
    /// one tag written after creation). Only a complete image is a digest
    /// hit; a baking one whose run is dead is a leftover for `bake gc`.
    pub const STATE: &str = "kiln:state";
    /// [`STATE`] of an image whose bake has not finished publishing.
    pub const STATE_BAKING: &str = "baking";
    /// [`STATE`] of an image whose bake succeeded, copies and shares
    /// included.
    pub const STATE_COMPLETE: &str = "complete";
    /// The regions the image is copied to (the recipe's publish regions,
    /// comma-separated), set at creation so `bake gc` finds a dead run's
    /// copies from the image itself.
    pub const COPIES: &str = "kiln:copies";
    /// When the image is deprecated (RFC 3339 UTC; `bake deprecate`): `bake
    /// list` shows it; from then on `bake prune` no longer counts it among
    /// the newest N and deletes it unless something uses it. On aws, EC2's
    /// own deprecation time (EnableImageDeprecation) says the same.
    pub const DEPRECATE_AT: &str = "kiln:deprecate-at";

    /// On groups, listeners and target groups that `roll up` created: the
    /// group (service) they belong to. Roll never writes [`RUN`], so
    /// `bake gc` never takes a serving instance or a standby.
    pub const ROLL_GROUP: &str = "kiln:roll-group";
    /// On a group roll manages: the image the last finished roll came
    /// from (`roll back`'s target once no standby is kept). Written by
    /// roll's record (`roll/src/record.rs` `keys::PREVIOUS`).
    pub const PREVIOUS_IMAGE: &str = "kiln:previous-image";
    /// On a group roll manages: the blue/green standby's image and the end
    /// of its window (Unix ms) (`keys::STANDBY_IMAGE`, `keys::STANDBY_UNTIL`).
    pub const STANDBY_IMAGE: &str = "kiln:standby-image";
    pub const STANDBY_UNTIL: &str = "kiln:standby-until";
}

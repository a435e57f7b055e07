//! Local load balancers live in the fleet daemon that `roll` adds; until
//! then every call says so.

use async_trait::async_trait;

use super::{BACKEND, LocalCloud};
use crate::error::{CloudError, Result};
use crate::ids::TargetGroupId;
use crate::lb::{LoadBalancers, Target, TargetStatus};

fn unsupported(op: &'static str) -> CloudError {
    CloudError::Unsupported {
        backend: BACKEND,
        op,
    }
}

#[async_trait]
impl LoadBalancers for LocalCloud {
    async fn targets(&self, _tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        Err(unsupported("load balancers (yet)"))
    }
    async fn register(&self, _tg: &TargetGroupId, _targets: &[Target]) -> Result<()> {
        Err(unsupported("load balancers (yet)"))
    }
    async fn deregister(&self, _tg: &TargetGroupId, _targets: &[Target]) -> Result<()> {
        Err(unsupported("load balancers (yet)"))
    }
}

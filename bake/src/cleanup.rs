//! What a run must undo, and how it is told to stop.
//!
//! Every resource is pushed onto the [`Cleanup`] list right after it is
//! created; the list runs (newest first) on success, error and Ctrl-C. The
//! image a successful run produces, and its copies in other regions, are
//! [`Cleanup::keep`]-ed, i.e. taken off the list, as the run's very last
//! step.
//!
//! A run removes only what it made: an image carrying another run's tag
//! (locally, the same content baked before is the same image, and a bake
//! that finds it in place gets its id back) is left alone.

use std::sync::Mutex;

use cloud::{Cloud, CloudError, ImageId, InstanceId, Region, RunId, tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    TerminateBuilder(InstanceId),
    /// The image and its storage (snapshots, manifest).
    DeregisterImage(ImageId),
    /// A copy in another region and its snapshots there.
    DeregisterCopy {
        image: ImageId,
        region: Region,
    },
}

#[derive(Debug)]
pub struct Cleanup {
    run: RunId,
    actions: Mutex<Vec<Action>>,
}

impl Cleanup {
    /// The cleanup list of `run`.
    pub fn new(run: RunId) -> Cleanup {
        Cleanup {
            run,
            actions: Mutex::new(Vec::new()),
        }
    }

    pub fn push(&self, a: Action) {
        if let Ok(mut v) = self.actions.lock() {
            v.push(a);
        }
    }

    /// Takes `a` off the list: it is the run's result, not garbage.
    pub fn keep(&self, a: &Action) {
        if let Ok(mut v) = self.actions.lock() {
            v.retain(|x| x != a);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.actions.lock().map(|v| v.is_empty()).unwrap_or(true)
    }

    /// Runs every action, newest first; keeps going past failures and
    /// returns them (so one stuck resource does not leak the others).
    pub async fn run(&self, cloud: &Cloud) -> Vec<String> {
        let actions: Vec<Action> = self
            .actions
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let mut errors = Vec::new();
        for a in actions.into_iter().rev() {
            let r = match &a {
                Action::TerminateBuilder(id) => cloud.builders().terminate(id).await,
                Action::DeregisterImage(id) => self.deregister_own(cloud, id).await,
                Action::DeregisterCopy { image, region } => {
                    cloud.images().deregister_copy(image, region).await
                }
            };
            if let Err(e) = r {
                errors.push(format!("cleanup {a:?}: {e}"));
            }
        }
        errors
    }

    /// Deregisters `id` unless another run's tag says it is not ours.
    async fn deregister_own(&self, cloud: &Cloud, id: &ImageId) -> Result<(), CloudError> {
        let maker = match cloud.images().describe(id).await {
            Ok(info) => info.tags.get(tags::RUN).cloned(),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if maker.is_some_and(|m| m != self.run.as_str()) {
            return Ok(());
        }
        cloud.images().deregister(id).await
    }
}

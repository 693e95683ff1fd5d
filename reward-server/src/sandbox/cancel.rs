//! [`Cancel`]: a flag that stops a run of test cases early, when nobody
//! will read its result any more (the HTTP client went away, its deadline
//! passed, the server is shutting down).
//!
//! The sandbox looks at the flag before each case and, while a case runs,
//! at every epoch tick ([`super::EPOCH_TICK`], 10 ms), so a cancelled run
//! stops within a tick, guest code or not. Whoever cancels can also ask to
//! be told ([`Cancel::on_cancel`]): a sandbox worker process's parent uses
//! that to pass the cancellation on to the child.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A cancellation flag shared by clones. Cancelling is for good.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    next_hook: AtomicU64,
    /// Callbacks to run once, on [`Cancel::cancel`]. The lock is held while
    /// they run, so removing one waits for it to finish.
    hooks: Mutex<Vec<(u64, Hook)>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Cancel {
    /// A flag not cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels: runs end at their next check, and the hooks run (once).
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut hooks = self.inner.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, hook) in hooks.drain(..) {
            hook();
        }
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// Runs `hook` when this flag is cancelled (at once if it already is),
    /// until the returned guard is dropped. Dropping the guard waits for a
    /// hook that is running.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) -> HookGuard {
        let id = self.inner.next_hook.fetch_add(1, Ordering::Relaxed);
        let mut hooks = self.inner.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_cancelled() {
            drop(hooks);
            hook();
        } else {
            hooks.push((id, Box::new(hook)));
        }
        HookGuard {
            cancel: self.clone(),
            id,
        }
    }
}

/// Cancels its flag when dropped: held by whoever waits for a run, so that
/// the run stops when the waiter goes away (an HTTP client disconnecting
/// drops its handler).
pub struct CancelOnDrop(pub Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Keeps a hook of [`Cancel::on_cancel`] registered; dropping it removes the
/// hook.
pub struct HookGuard {
    cancel: Cancel,
    id: u64,
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        let mut hooks = self
            .cancel
            .inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        hooks.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn hooks_run_once_on_cancel_and_not_after_their_guard_is_dropped() {
        let cancel = Cancel::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = |ran: &Arc<AtomicUsize>| {
            let ran = Arc::clone(ran);
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let kept = cancel.on_cancel(counter(&ran));
        drop(cancel.on_cancel(counter(&ran)));
        assert!(!cancel.is_cancelled());
        cancel.clone().cancel();
        cancel.cancel();
        assert!(cancel.is_cancelled());
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the registered hook, once");
        // Registering on a cancelled flag runs the hook at once.
        let _late = cancel.on_cancel(counter(&ran));
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        drop(kept);
    }
}

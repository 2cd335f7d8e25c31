//! One restic per repository: jobs on the same repository take turns, in
//! the order they asked, so restic-cronned never causes a lock conflict of
//! its own. Jobs on different repositories run in parallel.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::restic::Repository;

/// Who holds each repository, and who waits for it.
#[derive(Default)]
pub struct Repositories {
    turns: Mutex<HashMap<Repository, Turns>>,
    next_id: AtomicU64,
}

struct Turns {
    holder: u64,
    holder_name: String,
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    name: String,
    granted: Sender<()>,
}

/// The answer to [`Repositories::acquire`].
pub enum Acquired {
    /// The repository is ours until the guard drops.
    Now(Guard),
    /// Someone else holds it; the ticket's `granted` fires when it is ours.
    Later { holder: String, ticket: Ticket },
}

/// Holding a repository. Dropping it hands the repository to the next job.
pub struct Guard {
    repositories: Arc<Repositories>,
    repository: Repository,
    id: u64,
}

/// A place in a repository's queue. Dropping it leaves the queue (or, when
/// the turn came meanwhile, passes the turn on).
pub struct Ticket {
    guard: Option<Guard>,
    pub granted: Receiver<()>,
}

impl Ticket {
    /// The turn came (after `granted` fired).
    pub fn into_guard(mut self) -> Guard {
        self.guard
            .take()
            .expect("a ticket holds its guard until used")
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            if let Some(t) = guard.repositories.lock().get_mut(&guard.repository) {
                t.waiting.retain(|w| w.id != guard.id);
            }
            // `guard` drops here: it passes the turn on only if the turn
            // came while we were giving up.
        }
    }
}

impl Repositories {
    fn lock(&self) -> MutexGuard<'_, HashMap<Repository, Turns>> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `repository` on behalf of the job `name`.
    pub fn acquire(self: &Arc<Self>, repository: &Repository, name: &str) -> Acquired {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            repositories: self.clone(),
            repository: repository.clone(),
            id,
        };
        let mut turns = self.lock();
        match turns.get_mut(repository) {
            None => {
                turns.insert(
                    repository.clone(),
                    Turns {
                        holder: id,
                        holder_name: name.to_string(),
                        waiting: VecDeque::new(),
                    },
                );
                Acquired::Now(guard)
            }
            Some(t) => {
                let (sender, granted) = bounded(1);
                t.waiting.push_back(Waiter {
                    id,
                    name: name.to_string(),
                    granted: sender,
                });
                Acquired::Later {
                    holder: t.holder_name.clone(),
                    ticket: Ticket {
                        guard: Some(guard),
                        granted,
                    },
                }
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut turns = self.repositories.lock();
        let Some(t) = turns.get_mut(&self.repository) else {
            return;
        };
        if t.holder != self.id {
            return;
        }
        match t.waiting.pop_front() {
            Some(next) => {
                t.holder = next.id;
                t.holder_name = next.name;
                // The receiver lives in the waiter's ticket; if that ticket
                // is being dropped right now, it sees itself as holder and
                // passes the turn on.
                let _ = next.granted.send(());
            }
            None => {
                turns.remove(&self.repository);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo(path: &str) -> Repository {
        Repository::new(path, Path::new("/"))
    }

    fn now(acquired: Acquired) -> Guard {
        match acquired {
            Acquired::Now(guard) => guard,
            Acquired::Later { .. } => panic!("expected the repository at once"),
        }
    }

    fn later(acquired: Acquired) -> (String, Ticket) {
        match acquired {
            Acquired::Later { holder, ticket } => (holder, ticket),
            Acquired::Now(_) => panic!("expected to wait"),
        }
    }

    #[test]
    fn turns_go_in_arrival_order_and_other_repositories_are_free() {
        let repos = Arc::new(Repositories::default());
        let a = now(repos.acquire(&repo("/r1"), "a"));
        let _other = now(repos.acquire(&repo("/r2"), "x"));
        let (holder, b) = later(repos.acquire(&repo("/r1"), "b"));
        assert_eq!(holder, "a");
        let (_, c) = later(repos.acquire(&repo("/r1"), "c"));
        assert!(b.granted.try_recv().is_err());
        drop(a);
        assert!(b.granted.try_recv().is_ok());
        assert!(c.granted.try_recv().is_err());
        let b = b.into_guard();
        drop(b);
        assert!(c.granted.try_recv().is_ok());
        drop(c.into_guard());
        now(repos.acquire(&repo("/r1"), "d"));
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_or_passes_its_turn_on() {
        let repos = Arc::new(Repositories::default());
        let a = now(repos.acquire(&repo("/r"), "a"));
        let (_, b) = later(repos.acquire(&repo("/r"), "b"));
        let (_, c) = later(repos.acquire(&repo("/r"), "c"));
        drop(b); // b is stopped while waiting
        drop(a);
        assert!(c.granted.try_recv().is_ok(), "c comes next");
        let (_, d) = later(repos.acquire(&repo("/r"), "d"));
        drop(c); // c's turn came, but it gave up before using it
        assert!(
            d.granted.try_recv().is_ok(),
            "d gets the turn c did not use"
        );
    }
}

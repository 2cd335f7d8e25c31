//! The threads that deliver healthcheck pings (src/delivery/healthcheck.rs) and
//! notifications (src/delivery/notify.rs): a [`Pool`] of queues keyed by a string,
//! each drained in order by its own thread, so a dead receiver holds up only
//! its own key and never a job. Threads start with the first item, so a
//! daemon that never pings or notifies has none. At shutdown one deadline
//! holds for every thread; each request gets only the time left before it.
//!
//! Notifications (`notify`) and healthcheck pings (`healthcheck`) go out
//! through these threads.

pub mod healthcheck;
pub mod notify;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

/// How a pool runs.
pub struct Settings {
    /// Its threads are named `thread_name 0`, `thread_name 1`, …
    pub thread_name: &'static str,
    /// Each key has a thread of its own, up to this many; beyond, keys
    /// share them (each key still always on the same one, in order).
    pub max_threads: usize,
    /// The most one request may take.
    pub timeout: Duration,
    /// How long after the pool's drop queued items are still tried, when
    /// [`Pool::give_up_at`] set no earlier deadline.
    pub shutdown_grace: Duration,
    /// Builds the HTTP agent, once, with the first thread; all share it.
    pub agent: fn() -> ureq::Agent,
}

/// What a delivery gets from its thread: the agent and the clock of the
/// shutdown.
pub struct Courier {
    pub agent: ureq::Agent,
    timeout: Duration,
    give_up_at: Arc<OnceLock<Instant>>,
    /// Nothing is ever sent on it: the pool's drop closes it, which wakes
    /// a thread waiting to retry.
    stopped: Receiver<()>,
}

impl Courier {
    /// The time the next request may take: [`Settings::timeout`], or what
    /// is left before the shutdown's deadline, not a fresh period; `None`
    /// when that has passed (the item is to be dropped).
    pub fn time_left(&self) -> Option<Duration> {
        match self.give_up_at.get() {
            None => Some(self.timeout),
            Some(at) => at
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .map(|left| left.min(self.timeout)),
        }
    }

    /// Waits until `at` (to retry); `false` when the shutdown's deadline
    /// comes first.
    pub fn wait_until(&self, at: Instant) -> bool {
        // Before the shutdown the wait is on `stopped`, so the shutdown
        // does not wait for a retry 5 s away; after it (the deadline is set
        // before `stopped` is closed) the deadline decides.
        let _ = self.stopped.recv_deadline(at);
        if let Some(give_up_at) = self.give_up_at.get() {
            if at >= *give_up_at {
                return false;
            }
            thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        true
    }
}

/// Why [`Queue::send`] did not queue an item.
#[derive(Debug)]
pub enum NotQueued {
    /// The pool was dropped.
    ShuttingDown,
    /// The key needed a thread and none could start (a thread limit such
    /// as systemd's TasksMax): this item is lost, not the job.
    NoThread(std::io::Error),
}

impl fmt::Display for NotQueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotQueued::ShuttingDown => f.write_str("shutting down"),
            NotQueued::NoThread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

type Deliver<T> = dyn Fn(&Courier, T) + Send + Sync;

/// What the pool, its queues and its threads share.
struct Shared<T> {
    settings: Settings,
    deliver: Arc<Deliver<T>>,
    /// Set at shutdown: what is not delivered by then is dropped, so a dead
    /// receiver cannot hold the daemon's exit up for long.
    give_up_at: Arc<OnceLock<Instant>>,
    /// Locked only to queue an item or start a thread, never while one is
    /// delivered.
    workers: Mutex<Workers<T>>,
}

impl<T> Shared<T> {
    fn workers(&self) -> MutexGuard<'_, Workers<T>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The threads, started one by one as keys need them.
struct Workers<T> {
    /// Set when the pool is dropped: nothing more is queued.
    closed: bool,
    /// Built with the first thread, shared by all.
    agent: Option<ureq::Agent>,
    /// Each thread's queue.
    queues: Vec<Sender<T>>,
    /// Which thread delivers for which key.
    by_key: HashMap<String, usize>,
    threads: Vec<JoinHandle<()>>,
    /// Dropped at shutdown to close `stopped` (see [`Courier`]).
    stop: Option<Sender<()>>,
    stopped: Receiver<()>,
}

/// The delivery threads. Dropping it gives what is queued until the
/// shutdown's deadline, then joins them.
pub struct Pool<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Pool<T> {
    /// A pool whose threads hand each item to `deliver`. It starts no
    /// thread until the first item.
    pub fn new(settings: Settings, deliver: impl Fn(&Courier, T) + Send + Sync + 'static) -> Self {
        let (stop, stopped) = bounded(0);
        Pool {
            shared: Arc::new(Shared {
                settings,
                deliver: Arc::new(deliver),
                give_up_at: Arc::new(OnceLock::new()),
                workers: Mutex::new(Workers {
                    closed: false,
                    agent: None,
                    queues: Vec::new(),
                    by_key: HashMap::new(),
                    threads: Vec::new(),
                    stop: Some(stop),
                    stopped,
                }),
            }),
        }
    }

    /// Where items are queued.
    pub fn queue(&self) -> Queue<T> {
        Queue {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Pool<T> {
    /// At shutdown: what is not delivered by `at` is dropped (the first
    /// deadline set counts; dropping the pool sets one
    /// [`Settings::shutdown_grace`] from then).
    pub fn give_up_at(&self, at: Instant) {
        let _ = self.shared.give_up_at.set(at);
    }

    #[cfg(test)]
    pub(crate) fn threads_started(&self) -> usize {
        self.shared.workers().threads.len()
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        let shared = &self.shared;
        let _ = shared
            .give_up_at
            .set(Instant::now() + shared.settings.shutdown_grace);
        let threads = {
            let mut workers = shared.workers();
            workers.closed = true;
            // Queues held by jobs that outlive us queue nothing more, so
            // dropping these ends each thread once it is empty.
            workers.queues.clear();
            workers.stop = None;
            std::mem::take(&mut workers.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Where items are queued (cheap to clone).
pub struct Queue<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + 'static> Queue<T> {
    /// Queues `item` behind the earlier items of `key`, starting a thread
    /// for the key if it needs one; never blocks.
    pub fn send(&self, key: &str, item: T) -> Result<(), NotQueued> {
        let mut workers = self.shared.workers();
        if workers.closed {
            return Err(NotQueued::ShuttingDown);
        }
        let max_threads = self.shared.settings.max_threads;
        let queue = match workers.by_key.get(key) {
            Some(&index) => workers.queues[index].clone(),
            None if workers.queues.len() >= max_threads => {
                let index = key
                    .bytes()
                    .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
                    % max_threads;
                workers.by_key.insert(key.to_string(), index);
                workers.queues[index].clone()
            }
            None => self
                .start_thread(&mut workers, key)
                .map_err(NotQueued::NoThread)?,
        };
        // Unbounded: never blocks.
        let _ = queue.send(item);
        Ok(())
    }

    /// Starts a thread for `key` and returns its queue.
    fn start_thread(&self, workers: &mut Workers<T>, key: &str) -> std::io::Result<Sender<T>> {
        let settings = &self.shared.settings;
        let index = workers.queues.len();
        let courier = Courier {
            agent: workers.agent.get_or_insert_with(settings.agent).clone(),
            timeout: settings.timeout,
            give_up_at: self.shared.give_up_at.clone(),
            stopped: workers.stopped.clone(),
        };
        let deliver = self.shared.deliver.clone();
        let (queue, items) = unbounded();
        let thread = thread::Builder::new()
            .name(format!("{} {index}", settings.thread_name))
            .spawn(move || {
                for item in items {
                    deliver(&courier, item);
                }
            })?;
        workers.threads.push(thread);
        workers.queues.push(queue.clone());
        workers.by_key.insert(key.to_string(), index);
        Ok(queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_threads: usize) -> (Pool<&'static str>, Receiver<(String, &'static str)>) {
        let (sender, delivered) = unbounded();
        let settings = Settings {
            thread_name: "test",
            max_threads,
            timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            agent: ureq::Agent::new_with_defaults,
        };
        let pool = Pool::new(settings, move |_: &Courier, item| {
            let name = thread::current().name().unwrap_or_default().to_string();
            let _ = sender.send((name, item));
        });
        (pool, delivered)
    }

    #[test]
    fn threads_start_per_key_up_to_the_most_then_keys_share_them() {
        let (pool, delivered) = pool(2);
        assert_eq!(pool.threads_started(), 0, "no thread before an item");
        let queue = pool.queue();
        for (key, item) in [
            ("a", "a1"),
            ("b", "b1"),
            ("c", "c1"),
            ("a", "a2"),
            ("c", "c2"),
        ] {
            queue.send(key, item).unwrap();
        }
        assert_eq!(pool.threads_started(), 2);
        drop(pool);
        let delivered: Vec<_> = delivered.try_iter().collect();
        let thread_of = |item| {
            delivered
                .iter()
                .find(|(_, i)| *i == item)
                .unwrap()
                .0
                .clone()
        };
        assert_ne!(thread_of("a1"), thread_of("b1"));
        assert_eq!(thread_of("c1"), thread_of("c2"));
        let order: Vec<_> = delivered.iter().map(|(_, i)| *i).collect();
        let at = |item| order.iter().position(|i| *i == item).unwrap();
        assert!(at("a1") < at("a2") && at("c1") < at("c2"), "{order:?}");
        // A queue that outlives the pool queues nothing.
        assert!(matches!(
            queue.send("a", "a3"),
            Err(NotQueued::ShuttingDown)
        ));
    }

    #[test]
    fn a_request_gets_only_the_time_left_before_the_deadline() {
        let (stop, stopped) = bounded(0);
        let courier = Courier {
            agent: ureq::Agent::new_with_defaults(),
            timeout: Duration::from_secs(5),
            give_up_at: Arc::new(OnceLock::new()),
            stopped,
        };
        assert_eq!(courier.time_left(), Some(Duration::from_secs(5)));
        let _ = courier
            .give_up_at
            .set(Instant::now() + Duration::from_secs(2));
        let left = courier.time_left().unwrap();
        assert!(left <= Duration::from_secs(2) && left > Duration::from_secs(1));
        // As at shutdown: the deadline first, then `stopped` closes.
        drop(stop);
        assert!(!courier.wait_until(Instant::now() + Duration::from_secs(3)));
        assert!(courier.wait_until(Instant::now()));
        let courier = Courier {
            give_up_at: Arc::new(OnceLock::from(Instant::now())),
            ..courier
        };
        assert_eq!(courier.time_left(), None);
    }
}

//! A timer looked at, after it is registered, only when it may have fired.
//!
//! A proxied request wakes its connection task several times (the client's head, the pod's
//! head, the body, the write), and every `select!` over a [`Sleep`] polled it each time:
//! `Sleep::poll` takes from the task's coop budget and re-registers the waker with the timer
//! entry (~150 instructions, twice a request's timers, in callgrind). A timer that fires
//! wakes the waker it holds, so until then a poll with the same waker learns nothing new.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use tokio::time::{Instant, Sleep};

/// A pinned [`Sleep`] polled only until it holds the polling task's waker; later polls with
/// that waker look at whether it fired ([`Sleep::is_elapsed`]) and poll it only then. A poll
/// with another waker, or after [`WatchedSleep::reset`], polls it again.
pub struct WatchedSleep<'a> {
    sleep: Pin<&'a mut Sleep>,
    /// The waker the registered timer wakes; `None`: not known to be registered.
    waker: Option<Waker>,
}

impl<'a> WatchedSleep<'a> {
    pub fn new(sleep: Pin<&'a mut Sleep>) -> Self {
        WatchedSleep { sleep, waker: None }
    }

    /// Moves the deadline to `at` ([`Sleep::reset`]).
    pub fn reset(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.waker = None;
    }
}

impl Future for WatchedSleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(w) = &this.waker
            && w.will_wake(cx.waker())
            && !this.sleep.is_elapsed()
        {
            return Poll::Pending;
        }
        // Without coop budget `Sleep::poll` returns before registering anything.
        let registers = tokio::task::coop::has_budget_remaining();
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.waker = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                this.waker = registers.then(|| cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{pin::pin, time::Duration};

    use super::*;

    /// It fires at its deadline, and again at a reset one, however often it is polled
    /// between (paused clock).
    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline_and_at_a_reset_one() {
        let start = Instant::now();
        let sleep = pin!(tokio::time::sleep(Duration::from_secs(5)));
        let mut s = WatchedSleep::new(sleep);
        for _ in 0..3 {
            // Polled (and found pending) several times before the deadline.
            assert!(futures_poll_once(&mut s).await.is_pending());
        }
        (&mut s).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        s.reset(Instant::now() + Duration::from_secs(2));
        assert!(futures_poll_once(&mut s).await.is_pending());
        (&mut s).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    /// A poll with a task's waker after the budget ran out registers nothing; the next
    /// poll must then register, or it would never fire.
    #[tokio::test(start_paused = true)]
    async fn a_poll_without_budget_is_not_taken_for_a_registration() {
        let start = Instant::now();
        let sleep = pin!(tokio::time::sleep(Duration::from_secs(1)));
        let mut s = WatchedSleep::new(sleep);
        // Spend the task's budget (128 operations) on a ready channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..256 {
            let _ = tx.send(());
        }
        while tokio::task::coop::has_budget_remaining() {
            let _ = futures_poll_once(&mut pin!(rx.recv())).await;
        }
        assert!(futures_poll_once(&mut s).await.is_pending());
        assert!(s.waker.is_none());
        (&mut s).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    /// One poll of `f` with the task's own waker.
    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }
}

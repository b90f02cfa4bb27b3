use std::{future::pending, time::Duration};

use tokio::time::Instant;

use super::*;

/// A connection that finishes once asked to close when `obeys`, else never.
struct FakeConn {
    obeys: bool,
    asked: Option<Instant>,
}

impl Future for FakeConn {
    type Output = Result<(), ()>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if self.obeys && self.asked.is_some() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

fn fake(obeys: bool) -> FakeConn {
    FakeConn { obeys, asked: None }
}

fn ask(c: Pin<&mut FakeConn>) {
    c.get_mut().asked.get_or_insert_with(Instant::now);
}

const T: ConnTimeouts = ConnTimeouts {
    first_request: Duration::from_secs(2),
    idle: Duration::from_secs(10),
    send: Duration::from_secs(4),
};

#[tokio::test(start_paused = true)]
async fn no_request_within_the_header_timeout_closes_then_drops() {
    let start = Instant::now();
    let progress = Progress::new();
    let mut conn = fake(false);
    let ended = supervise(Pin::new(&mut conn), ask, &progress, T, pending()).await;
    assert!(matches!(ended, Ended::Dropped(CloseReason::NoRequest)));
    assert_eq!(conn.asked, Some(start + T.first_request));
    // The grace is the timeout that fired.
    assert_eq!(start.elapsed(), T.first_request * 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_in_progress_is_never_idle_and_idleness_starts_when_it_ends() {
    let start = Instant::now();
    let progress = Progress::new();
    let request = progress.begin();
    let held = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(100)).await;
        drop(request);
    });
    let mut conn = fake(true);
    let ended = supervise(Pin::new(&mut conn), ask, &progress, T, pending()).await;
    assert!(matches!(ended, Ended::Finished(Ok(()))));
    assert_eq!(conn.asked, Some(start + Duration::from_secs(100) + T.idle));
    held.await.unwrap();
    assert_eq!(progress.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_response_body_keeps_its_request_in_progress_until_dropped() {
    let progress = Progress::new();
    let resp = progress
        .begin()
        .hold(Response::new(http_body_util::Empty::<bytes::Bytes>::new()));
    assert_eq!(progress.open(), 1);
    assert_eq!(progress.deadline(&T), None);
    tokio::time::advance(Duration::from_secs(3)).await;
    drop(resp);
    assert_eq!(progress.open(), 0);
    let (at, why) = progress.deadline(&T).unwrap();
    assert_eq!(why, CloseReason::Idle);
    assert!(at >= Instant::now() + T.idle - Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_asks_to_close_at_once_and_waits() {
    let start = Instant::now();
    let progress = Progress::new();
    let _request = progress.begin();
    let mut conn = fake(false);
    let stop = tokio::time::sleep(Duration::from_secs(1));
    let run = supervise(Pin::new(&mut conn), ask, &progress, T, stop);
    // Never dropped for shutdown: the owner's drain deadline decides.
    assert!(
        tokio::time::timeout(Duration::from_secs(1000), run)
            .await
            .is_err()
    );
    assert_eq!(conn.asked, Some(start + Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn the_keepalive_deadline_replaces_the_first_request_one_when_a_request_ends() {
    let start = Instant::now();
    let progress = Progress::new();
    let requests = progress.clone();
    // A keep-alive timeout shorter than the header timeout, as in the tests of the proxy.
    let t = ConnTimeouts {
        first_request: Duration::from_secs(60),
        idle: Duration::from_secs(1),
        send: Duration::from_secs(60),
    };
    let client = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(requests.begin());
    });
    let mut conn = fake(true);
    let ended = supervise(Pin::new(&mut conn), ask, &progress, t, pending()).await;
    assert!(matches!(ended, Ended::Finished(Ok(()))));
    assert_eq!(conn.asked, Some(start + Duration::from_secs(3)));
    client.await.unwrap();
}

/// A body of a few data frames, all ready at once.
struct Frames(Vec<&'static str>);

impl Body for Frames {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        let next = self.0.remove(0);
        Poll::Ready(Some(Ok(Frame::data(bytes::Bytes::from_static(
            next.as_bytes(),
        )))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_the_client_does_not_take_drops_the_connection_after_the_send_timeout() {
    let start = Instant::now();
    let progress = Progress::new();
    let requests = progress.clone();
    let taker = tokio::spawn(async move {
        // The first request comes after 1 s (the supervisor sleeps to the header timeout
        // then); the client takes one frame 2 s later, then nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut resp = requests
            .begin()
            .hold(Response::new(Frames(vec!["a", "b", "c"])));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let frame = std::future::poll_fn(|cx| Pin::new(resp.body_mut()).poll_frame(cx)).await;
        assert!(frame.is_some());
        tokio::time::sleep(Duration::from_secs(100)).await;
        drop(resp);
    });
    let t = ConnTimeouts {
        first_request: Duration::from_secs(60),
        ..T
    };
    let mut conn = fake(true);
    let ended = supervise(Pin::new(&mut conn), ask, &progress, t, pending()).await;
    assert!(matches!(ended, Ended::Dropped(CloseReason::Stalled)));
    assert_eq!(start.elapsed(), Duration::from_secs(3) + T.send);
    assert_eq!(conn.asked, None, "dropped, not asked to close");
    taker.abort();
}

#[tokio::test(start_paused = true)]
async fn a_finished_or_empty_response_waits_on_nobody() {
    let progress = Progress::new();
    let empty = progress.begin().hold(Response::new(Frames(vec![])));
    assert_eq!(progress.deadline(&T), None);
    let mut one = progress.begin().hold(Response::new(Frames(vec!["only"])));
    assert!(matches!(
        progress.deadline(&T),
        Some((_, CloseReason::Stalled))
    ));
    let frame = std::future::poll_fn(|cx| Pin::new(one.body_mut()).poll_frame(cx)).await;
    assert!(frame.is_some());
    // The last frame went out: nothing more to wait for.
    assert_eq!(progress.deadline(&T), None);
    drop((empty, one));
    assert!(matches!(
        progress.deadline(&T),
        Some((_, CloseReason::Idle))
    ));
}

/// `keep-alive-requests`: the limit-th request is the last (0 counts as 1, as nginx's `>=`);
/// the connection is asked to close as that request starts, and dropped a grace after it ends
/// when it does not close by itself (an HTTP/2 client that never answers the GOAWAY's PING).
#[tokio::test(start_paused = true)]
async fn the_last_request_asks_the_connection_to_close() {
    let progress = Progress::with_request_limit(2);
    assert!(!progress.exhausted());
    let first = progress.begin();
    assert!(!first.is_last() && !progress.exhausted());
    drop(first);
    let last = progress.begin();
    assert!(last.is_last() && progress.exhausted());
    let zero = Progress::with_request_limit(0);
    assert!(!zero.exhausted(), "no request yet");
    assert!(zero.begin().is_last());
    assert!(!Progress::new().begin().is_last());

    let start = Instant::now();
    let held = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(last);
    });
    let mut conn = fake(false);
    let ended = supervise(Pin::new(&mut conn), ask, &progress, T, pending()).await;
    held.await.unwrap();
    assert_eq!(
        conn.asked,
        Some(start),
        "asked at once, the request still in progress"
    );
    assert!(matches!(ended, Ended::Dropped(CloseReason::Exhausted)));
    assert_eq!(start.elapsed(), Duration::from_secs(3) + MAX_CLOSE_GRACE);
}

/// A connection that, when woken with a request waiting, serves it whole within the poll (as
/// hyper does for a kept-alive HTTP/1 client whose request and answer fit one wake-up),
/// counting its polls.
struct ServesOnEachPoll {
    progress: Progress,
    polls: Arc<AtomicUsize>,
    waiting: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl Future for ServesOnEachPoll {
    type Output = Result<(), ()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if self.waiting.swap(false, Ordering::Relaxed) {
            drop(self.progress.begin());
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A request that starts and ends inside the connection's poll moves the deadline, and must
/// not poll the connection a second time (hyper's read attempt and flush for nothing: over
/// TLS, and HTTP/2's frame loop, thousands of instructions a request).
#[tokio::test(start_paused = true)]
async fn a_wake_up_polls_the_connection_once_though_a_request_started_and_ended_in_it() {
    let progress = Progress::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicBool::new(true));
    let waker = Arc::new(std::sync::Mutex::new(None::<std::task::Waker>));
    let mut conn = ServesOnEachPoll {
        progress: progress.clone(),
        polls: Arc::clone(&polls),
        waiting: Arc::clone(&waiting),
        waker: Arc::clone(&waker),
    };
    let p = progress.clone();
    let task = tokio::spawn(async move {
        supervise(Pin::new(&mut conn), |_| {}, &p, T, pending()).await;
    });
    let settle = || async {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    };
    settle().await;
    assert_eq!(polls.load(Ordering::Relaxed), 1);
    for wake in 2..=4 {
        waiting.store(true, Ordering::Relaxed);
        let w = waker.lock().unwrap().take().expect("polled");
        w.wake();
        settle().await;
        assert_eq!(polls.load(Ordering::Relaxed), wake);
    }
    // Idleness still counts from the last request's end.
    let (at, why) = progress.deadline(&T).unwrap();
    assert_eq!(why, CloseReason::Idle);
    assert!(at >= Instant::now() + T.idle - Duration::from_millis(1));
    task.abort();
}

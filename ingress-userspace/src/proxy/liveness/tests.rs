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

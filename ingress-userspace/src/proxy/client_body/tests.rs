use std::{sync::Arc, time::Duration};

use futures::channel::mpsc;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::Instant;

use super::*;

type Item = Result<Frame<Bytes>, io::Error>;
type Frames = StreamBody<mpsc::Receiver<Item>>;

fn body(limit: u64, timeout: Duration) -> (mpsc::Sender<Item>, ClientBody<Frames>, Arc<BodyWatch>) {
    let (tx, rx) = mpsc::channel(8);
    let watch = Arc::new(BodyWatch::default());
    (
        tx,
        ClientBody::new(StreamBody::new(rx), limit, timeout, Arc::clone(&watch)),
        watch,
    )
}

fn data(n: usize) -> Item {
    Ok(Frame::data(Bytes::from(vec![b'x'; n])))
}

fn fault_of(r: Option<Result<Frame<Bytes>, BoxError>>) -> ClientFault {
    let e = r.expect("a frame").expect_err("an error");
    e.downcast_ref::<ClientBodyError>()
        .expect("a client body error")
        .0
}

#[tokio::test]
async fn more_bytes_than_the_limit_is_too_large_and_recorded() {
    let (mut tx, mut b, watch) = body(1000, Duration::ZERO);
    tx.try_send(data(600)).unwrap();
    tx.try_send(data(600)).unwrap();
    assert!(b.frame().await.unwrap().is_ok());
    assert_eq!(watch.fault(), None);
    assert_eq!(fault_of(b.frame().await), ClientFault::TooLarge);
    assert_eq!(watch.fault(), Some(ClientFault::TooLarge));
    assert_eq!(
        ClientFault::TooLarge.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // A failed body never looks complete to the sender, and keeps failing.
    assert!(!b.is_end_stream());
    assert_eq!(fault_of(b.frame().await), ClientFault::TooLarge);
}

// A paused clock: the sender's 100 ms gaps stay under the 200 ms timeout however busy
// the machine is (the runtime advances time only when every task waits).
#[tokio::test(start_paused = true)]
async fn a_client_silent_for_the_timeout_times_out_and_a_slow_one_does_not() {
    let (mut tx, mut b, watch) = body(0, Duration::from_millis(200));
    let sender = tokio::spawn(async move {
        // 0.6 s in all, three timeouts long, never more than 100 ms between reads.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = futures::SinkExt::send(&mut tx, data(10)).await;
        }
        tx
    });
    for _ in 0..6 {
        assert!(b.frame().await.unwrap().is_ok());
    }
    assert_eq!(watch.fault(), None);
    let _tx = sender.await.unwrap(); // still open, silent from now on
    let before = Instant::now();
    assert_eq!(fault_of(b.frame().await), ClientFault::TimedOut);
    assert!(before.elapsed() >= Duration::from_millis(190));
    assert_eq!(ClientFault::TimedOut.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn the_upstream_clock_stops_while_waiting_on_the_client() {
    let (mut tx, mut b, watch) = body(0, Duration::ZERO);
    assert_eq!(watch.upstream_clock_start_ms(5), Some(5));
    tx.try_send(data(1)).unwrap();
    assert!(b.frame().await.unwrap().is_ok());
    let after_frame = watch.upstream_clock_start_ms(0).unwrap();
    assert!(after_frame > 0);
    // Nothing to read: the body now waits on the client.
    let pending = futures::poll!(b.frame());
    assert!(pending.is_pending());
    assert_eq!(watch.upstream_clock_start_ms(0), None);
    drop(tx);
    assert!(b.frame().await.is_none(), "end of body");
    assert!(watch.upstream_clock_start_ms(0).unwrap() >= after_frame);
}

#[derive(Debug, thiserror::Error)]
#[error("wrapped")]
struct Wrapped(#[source] Box<dyn StdError + Send + Sync>);

#[tokio::test]
async fn body_errors_are_sorted_by_type() {
    let bad_chunk = io::Error::new(io::ErrorKind::InvalidInput, "invalid chunk size line");
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected EOF");
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(
        ClientFault::of_body_error(&Wrapped(bad_chunk.into())),
        ClientFault::Malformed
    );
    assert_eq!(
        ClientFault::of_body_error(&Wrapped(eof.into())),
        ClientFault::Aborted
    );
    assert_eq!(
        ClientFault::of_body_error(&Wrapped(reset.into())),
        ClientFault::Aborted
    );
    let cancel = h2::Error::from(h2::Reason::CANCEL);
    assert_eq!(
        ClientFault::of_body_error(&Wrapped(cancel.into())),
        ClientFault::Aborted
    );
    assert_eq!(ClientFault::Aborted.status().as_u16(), 499);

    // Through the body: the error is recorded, then surfaces.
    let (mut tx, mut b, watch) = body(0, Duration::ZERO);
    tx.try_send(Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk")))
        .unwrap();
    assert_eq!(fault_of(b.frame().await), ClientFault::Malformed);
    assert_eq!(watch.fault(), Some(ClientFault::Malformed));
    drop(tx);
}

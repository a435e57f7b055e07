//! The answer body a client gets: either one the balancer made, or a
//! target's body passed through frame by frame. The pass-through keeps
//! the request counted against its target until the body is done, counts
//! an answer that breaks off mid-body as failed, records the request's
//! duration, and feeds the shadow copy ([`Tee`]) when the request was
//! sampled.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::lb::State;
use crate::pool::InFlight;
use crate::shadow::Tee;
use crate::upstream::UpstreamBody;

pub(crate) struct ProxyBody(Kind);

enum Kind {
    Local(Option<Bytes>),
    Relay(Relay),
}

struct Relay {
    body: UpstreamBody,
    state: Arc<State>,
    start: Instant,
    /// The duration is recorded (the body ended, broke or was dropped).
    finished: bool,
    /// Boxed: only sampled requests have one, and the relay stays small.
    tee: Option<Box<Tee>>,
    /// Released last, when the relay is dropped: draining waits for it.
    _claim: InFlight,
}

impl ProxyBody {
    pub(crate) fn local(body: Bytes) -> ProxyBody {
        ProxyBody(Kind::Local(Some(body)))
    }

    pub(crate) fn relay(
        body: UpstreamBody,
        claim: InFlight,
        state: Arc<State>,
        start: Instant,
        tee: Option<Box<Tee>>,
    ) -> ProxyBody {
        ProxyBody(Kind::Relay(Relay {
            body,
            state,
            start,
            finished: false,
            tee,
            _claim: claim,
        }))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Local(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            Kind::Relay(relay) => relay.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Local(body) => body.is_none(),
            Kind::Relay(relay) => relay.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Local(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Relay(relay) => relay.body.size_hint(),
        }
    }
}

impl Relay {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(tee), Some(data)) = (self.tee.as_mut(), frame.data_ref())
                    && !tee.push(data)
                {
                    self.tee = None;
                }
                // hyper stops polling once the body says it ended, so the
                // end is noticed here rather than on a final `None`.
                if self.body.is_end_stream() {
                    self.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                self.state.stats.broken();
                self.tee = None;
                self.finish();
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let elapsed = self.start.elapsed();
        self.state.stats.finished(elapsed);
        if let Some(tee) = self.tee.take() {
            tee.complete(&self.state.settings.rt, elapsed);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.finished && !self.body.is_end_stream() {
            // The client went away (or the server shut down) mid-answer:
            // nothing complete to compare.
            self.tee = None;
        }
        self.finish();
    }
}

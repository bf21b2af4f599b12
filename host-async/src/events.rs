//! [`EventStream`]: the cam's events as a [`Stream`].

use std::pin::Pin;
use std::task::{Context, Poll};

use omv_session::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

/// The events of one [`Camera`](crate::Camera), from the moment the stream
/// was made, as they arrive (during requests and, while the stream exists,
/// between them). A reader that falls more than 1024 events behind loses
/// the oldest; [`lagged`](Self::lagged) counts them. It ends when the
/// camera's task ends.
pub struct EventStream {
    inner: BroadcastStream<Event>,
    lagged: u64,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> EventStream {
        EventStream {
            inner: BroadcastStream::new(rx),
            lagged: 0,
        }
    }

    /// Events this stream missed because it was read too slowly.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(e))) => return Poll::Ready(Some(e)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => self.lagged += n,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

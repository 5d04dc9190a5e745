//! The BPF ring buffer as a stream of record bytes. Every sample is one
//! record whose header carries its own size, so samples are simply
//! concatenated and decoded like a seq-iterator read.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};

pub struct EventStream {
    ring: RingBuffer<'static>,
    received: Rc<RefCell<Vec<u8>>>,
}

impl EventStream {
    pub fn new(map: &dyn MapCore) -> Result<Self> {
        let received = Rc::new(RefCell::new(Vec::with_capacity(1 << 20)));
        let sink = Rc::clone(&received);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |sample: &[u8]| {
                sink.borrow_mut().extend_from_slice(sample);
                0
            })
            .context("setting up the ring buffer")?;
        let ring = builder.build().context("setting up the ring buffer")?;
        Ok(EventStream { ring, received })
    }

    /// Waits up to `timeout` for a wake-up; returns every byte received,
    /// including records committed without one (BPF_RB_NO_WAKEUP).
    pub fn poll(&self, timeout: Duration) -> Result<Vec<u8>> {
        let ret = self.ring.poll_raw(timeout);
        // Interrupted by a signal (Ctrl-C): not an error, the caller decides.
        if ret < 0 && ret != -libc::EINTR {
            bail!(
                "reading the ring buffer: {}",
                std::io::Error::from_raw_os_error(-ret)
            );
        }
        self.consume()
    }

    /// Takes whatever is in the ring buffer now, without waiting.
    pub fn consume(&self) -> Result<Vec<u8>> {
        let ret = self.ring.consume_raw();
        if ret < 0 && ret != -libc::EINTR {
            bail!(
                "reading the ring buffer: {}",
                std::io::Error::from_raw_os_error(-ret)
            );
        }
        Ok(self.take())
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.received.borrow_mut())
    }
}

//! [`Cam`]: the `Camera` API the shared checks (`checks.rs`) use, as one
//! trait over both drivers: omv-blocking's `Camera` (its calls block inside
//! the async methods) and omv-async's (awaited). The checks are written
//! once, as async functions generic over `Cam`.
#![allow(async_fn_in_trait)]

use std::future::Future;

use omv_blocking::symbols::SymbolTable;
use omv_blocking::{CameraConfig, Result};
use omv_blocking::{ChannelKey, ChannelStatus, Frame, ProfileEntry, RawFrame, SystemInfo};
use omv_blocking::{Event, EventHandler, EventState};
use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::host::{HostStats, Reply};
use omv_proto::memory::MemoryStats;
use omv_proto::poll::PollBitmap;
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::version::Version;
use omv_proto::{ChannelId, Opcode};

/// Runs `f` on a current-thread tokio runtime (time and I/O on): the
/// async driver's task runs on this thread while `f` awaits.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

macro_rules! forward {
    (
        sync { $( fn $s:ident(&self) -> $sr:ty; )* }
        calls { $( fn $a:ident(&mut self $(, $arg:ident : $ty:ty)*) -> $ar:ty; )* }
    ) => {
        /// The methods both drivers have with the same signature.
        pub trait CamApi {
            $( fn $s(&self) -> $sr; )*
            $( async fn $a(&mut self $(, $arg: $ty)*) -> $ar; )*
        }
        impl CamApi for omv_blocking::Camera {
            $( fn $s(&self) -> $sr { omv_blocking::Camera::$s(self) } )*
            $( async fn $a(&mut self $(, $arg: $ty)*) -> $ar {
                omv_blocking::Camera::$a(self $(, $arg)*)
            } )*
        }
        impl CamApi for omv_async::Camera {
            $( fn $s(&self) -> $sr { omv_async::Camera::$s(self) } )*
            $( async fn $a(&mut self $(, $arg: $ty)*) -> $ar {
                omv_async::Camera::$a(self $(, $arg)*).await
            } )*
        }
    };
}

forward! {
    sync {
        fn is_connected(&self) -> bool;
        fn caps(&self) -> Caps;
        fn host_stats(&self) -> HostStats;
        fn event_state(&self) -> EventState;
        fn frame_ready(&self) -> bool;
        fn script_running(&self) -> Option<bool>;
        fn resync_count(&self) -> u64;
    }
    calls {
        fn version(&mut self) -> Result<Version>;
        fn system_info(&mut self) -> Result<SystemInfo>;
        fn system_info_lines(&mut self) -> Result<Vec<String>>;
        fn print_system_info(&mut self) -> ();
        fn memory_stats(&mut self) -> Result<MemoryStats>;
        fn device_stats(&mut self) -> Result<Stats>;
        fn get_channel_id(&mut self, name: &str) -> Result<Option<ChannelId>>;
        fn get_channel_name(&mut self, id: ChannelId) -> Result<Option<String>>;
        fn has_channel(&mut self, name: &str) -> Result<bool>;
        fn channel_list(&mut self) -> Result<Vec<ChannelEntry>>;
        fn update_channels(&mut self) -> Result<()>;
        fn channel_size(&mut self, name: &str) -> Result<u32>;
        fn channel_read(&mut self, name: &str, size: Option<u32>) -> Result<Option<Vec<u8>>>;
        fn channel_write(&mut self, name: &str, data: &[u8]) -> Result<bool>;
        fn channel_read_into(&mut self, name: &str, size: Option<u32>, buf: &mut Vec<u8>) -> Result<Option<usize>>;
        fn channel_read_at_into(&mut self, id: ChannelId, offset: u32, len: u32, buf: &mut Vec<u8>) -> Result<usize>;
        fn channel_size_at(&mut self, id: ChannelId) -> Result<u32>;
        fn channel_read_at(&mut self, id: ChannelId, offset: u32, len: u32) -> Result<Vec<u8>>;
        fn channel_write_at(&mut self, id: ChannelId, offset: u32, data: &[u8]) -> Result<()>;
        fn channel_shape(&mut self, id: ChannelId) -> Result<Shape>;
        fn channel_ioctl(&mut self, id: ChannelId, cmd: u32, args: &[u8]) -> Result<Vec<u8>>;
        fn channel_ioctl_u32(&mut self, id: ChannelId, cmd: u32, args: &[u32]) -> Result<Vec<u8>>;
        fn channel_poll(&mut self) -> Result<PollBitmap>;
        fn channel_lock(&mut self, id: ChannelId) -> Result<bool>;
        fn channel_unlock(&mut self, id: ChannelId) -> Result<bool>;
        fn request(&mut self, opcode: Opcode, channel: ChannelId, payload: &[u8]) -> Result<Option<Reply>>;
        fn resync(&mut self) -> Result<()>;
        fn exec(&mut self, script: &str) -> Result<()>;
        fn stop(&mut self) -> Result<()>;
        fn read_stdout(&mut self) -> Result<Option<String>>;
        fn read_status(&mut self) -> Result<ChannelStatus>;
        fn streaming(&mut self, enable: bool, raw: bool, resolution: Option<(u32, u32)>) -> Result<()>;
        fn read_frame(&mut self) -> Result<Option<Frame>>;
        fn read_frame_raw(&mut self) -> Result<Option<RawFrame>>;
        fn wait_events(&mut self, timeout: std::time::Duration) -> Result<u64>;
        fn poll_events(&mut self) -> Result<u64>;
        fn read_profile(&mut self, symbols: Option<&SymbolTable>) -> Result<Option<Vec<ProfileEntry>>>;
        fn profiler_reset(&mut self, events: Option<&[u32]>) -> Result<()>;
        fn profiler_event(&mut self, counter: u32, event: u32) -> Result<()>;
        fn profiler_mode(&mut self, exclusive: bool) -> Result<()>;
        fn update_capabilities(&mut self) -> Result<()>;
        fn boot(&mut self) -> Result<()>;
    }
}

/// A held channel lock of either driver.
pub trait Guard {
    /// The camera type.
    type C: Cam;
    fn id(&self) -> ChannelId;
    fn is_held(&self) -> bool;
    async fn unlock(&mut self) -> Result<bool>;
    /// The camera, while the lock is held.
    fn cam(&mut self) -> &mut Self::C;
}

/// The whole API the checks use: [`CamApi`] plus the methods whose
/// signatures differ between the drivers (borrowed vs owned results,
/// closures, guards).
pub trait Cam: CamApi + Sized {
    type Lock<'a>: Guard<C = Self>
    where
        Self: 'a;
    async fn get_channel<'a>(
        &mut self,
        key: impl Into<ChannelKey<'a>>,
    ) -> Result<Option<ChannelEntry>>;
    async fn channels(&mut self) -> Result<Vec<ChannelEntry>>;
    fn pending_events(&self) -> Vec<Event>;
    fn take_events(&mut self) -> Vec<Event>;
    async fn set_event_handler(&mut self, h: impl EventHandler + 'static);
    async fn clear_event_handler(&mut self);
    async fn set_capabilities(
        &mut self,
        f: impl FnOnce(&mut CameraConfig) + Send + 'static,
    ) -> Result<()>;
    async fn lock_channel(&mut self, id: ChannelId) -> Result<Option<Self::Lock<'_>>>;
    /// The target prefix of the driver's log lines.
    fn log_target(&self) -> &'static str;
}

impl Cam for omv_blocking::Camera {
    type Lock<'a> = omv_blocking::ChannelLock<'a>;
    async fn get_channel<'a>(
        &mut self,
        key: impl Into<ChannelKey<'a>>,
    ) -> Result<Option<ChannelEntry>> {
        omv_blocking::Camera::get_channel(self, key)
    }
    async fn channels(&mut self) -> Result<Vec<ChannelEntry>> {
        omv_blocking::Camera::channels(self).map(<[_]>::to_vec)
    }
    fn pending_events(&self) -> Vec<Event> {
        omv_blocking::Camera::pending_events(self)
            .cloned()
            .collect()
    }
    fn take_events(&mut self) -> Vec<Event> {
        omv_blocking::Camera::take_events(self)
    }
    async fn set_event_handler(&mut self, h: impl EventHandler + 'static) {
        omv_blocking::Camera::set_event_handler(self, h)
    }
    async fn clear_event_handler(&mut self) {
        omv_blocking::Camera::clear_event_handler(self)
    }
    async fn set_capabilities(
        &mut self,
        f: impl FnOnce(&mut CameraConfig) + Send + 'static,
    ) -> Result<()> {
        omv_blocking::Camera::set_capabilities(self, f)
    }
    async fn lock_channel(&mut self, id: ChannelId) -> Result<Option<Self::Lock<'_>>> {
        omv_blocking::Camera::lock_channel(self, id)
    }
    fn log_target(&self) -> &'static str {
        "omv_blocking"
    }
}

impl Guard for omv_blocking::ChannelLock<'_> {
    type C = omv_blocking::Camera;
    fn id(&self) -> ChannelId {
        omv_blocking::ChannelLock::id(self)
    }
    fn is_held(&self) -> bool {
        omv_blocking::ChannelLock::is_held(self)
    }
    async fn unlock(&mut self) -> Result<bool> {
        omv_blocking::ChannelLock::unlock(self)
    }
    fn cam(&mut self) -> &mut omv_blocking::Camera {
        self
    }
}

impl Cam for omv_async::Camera {
    type Lock<'a> = AsyncLock<'a>;
    async fn get_channel<'a>(
        &mut self,
        key: impl Into<ChannelKey<'a>>,
    ) -> Result<Option<ChannelEntry>> {
        omv_async::Camera::get_channel(self, key).await
    }
    async fn channels(&mut self) -> Result<Vec<ChannelEntry>> {
        omv_async::Camera::channels(self).await
    }
    fn pending_events(&self) -> Vec<Event> {
        omv_async::Camera::pending_events(self)
    }
    fn take_events(&mut self) -> Vec<Event> {
        omv_async::Camera::take_events(self)
    }
    async fn set_event_handler(&mut self, h: impl EventHandler + 'static) {
        omv_async::Camera::set_event_handler(self, h).await
    }
    async fn clear_event_handler(&mut self) {
        omv_async::Camera::clear_event_handler(self).await
    }
    async fn set_capabilities(
        &mut self,
        f: impl FnOnce(&mut CameraConfig) + Send + 'static,
    ) -> Result<()> {
        omv_async::Camera::set_capabilities(self, f).await
    }
    async fn lock_channel(&mut self, id: ChannelId) -> Result<Option<AsyncLock<'_>>> {
        let g = omv_async::Camera::lock_channel(self, id).await?;
        Ok(g.map(|lock| AsyncLock {
            lock,
            _cam: std::marker::PhantomData,
        }))
    }
    fn log_target(&self) -> &'static str {
        "omv_async"
    }
}

/// omv-async's guard, borrowing the camera like the blocking one does.
pub struct AsyncLock<'a> {
    lock: omv_async::ChannelLock,
    _cam: std::marker::PhantomData<&'a mut omv_async::Camera>,
}

impl Guard for AsyncLock<'_> {
    type C = omv_async::Camera;
    fn id(&self) -> ChannelId {
        self.lock.id()
    }
    fn is_held(&self) -> bool {
        self.lock.is_held()
    }
    async fn unlock(&mut self) -> Result<bool> {
        self.lock.unlock().await
    }
    fn cam(&mut self) -> &mut omv_async::Camera {
        &mut self.lock
    }
}

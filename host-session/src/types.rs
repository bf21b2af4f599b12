//! Typed results of the session's operations.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::frame::FrameHeader;
use omv_proto::poll::PollBitmap;
use omv_proto::profile::{decode_records, record_size, ProfileRecord};
use omv_proto::sysinfo::SysInfo;
use omv_proto::version::Version;
use omv_proto::ChannelId;

/// The cam's system information (SYS_INFO), every field typed. The field
/// names are the stock `system_info()` dict keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SystemInfo {
    /// 32-bit CPU identifier.
    pub cpu_id: u32,
    /// Unique device serial, three words.
    pub device_id: [u32; 3],
    /// Chip id of each image sensor (0 = none).
    pub chip_id: [u32; 3],
    /// USB vendor id.
    pub usb_vid: u16,
    /// USB product id.
    pub usb_pid: u16,
    /// Graphics processing unit.
    pub gpu_present: bool,
    /// Neural processing unit.
    pub npu_present: bool,
    /// Image signal processor.
    pub isp_present: bool,
    /// Video encoder.
    pub venc_present: bool,
    /// JPEG hardware encoder.
    pub jpeg_present: bool,
    /// External DRAM.
    pub dram_present: bool,
    /// CRC accelerator.
    pub crc_present: bool,
    /// Performance monitoring unit.
    pub pmu_present: bool,
    /// Number of PMU event counters (0 without a PMU).
    pub pmu_eventcnt: u8,
    /// Wi-Fi radio.
    pub wifi_present: bool,
    /// Bluetooth radio.
    pub bt_present: bool,
    /// SD card slot.
    pub sd_present: bool,
    /// Ethernet PHY.
    pub eth_present: bool,
    /// USB enumerated at high speed.
    pub usb_highspeed: bool,
    /// More than one CPU core.
    pub multicore_present: bool,
    /// Internal flash, KiB.
    pub flash_size_kb: u32,
    /// RAM, KiB.
    pub ram_size_kb: u32,
    /// Frame buffer, KiB.
    pub framebuffer_size_kb: u32,
    /// Stream buffer, KiB.
    pub stream_buffer_size_kb: u32,
    /// The decoded payload, including reserved words.
    pub raw: SysInfo,
}

impl From<SysInfo> for SystemInfo {
    fn from(s: SysInfo) -> SystemInfo {
        let c = s.caps();
        SystemInfo {
            cpu_id: s.cpu_id,
            device_id: s.device_id,
            chip_id: s.chip_id,
            usb_vid: s.usb_vid(),
            usb_pid: s.usb_pid(),
            gpu_present: c.gpu(),
            npu_present: c.npu(),
            isp_present: c.isp(),
            venc_present: c.venc(),
            jpeg_present: c.jpeg(),
            dram_present: c.dram(),
            crc_present: c.crc(),
            pmu_present: c.pmu(),
            pmu_eventcnt: c.pmu_eventcnt(),
            wifi_present: c.wifi(),
            bt_present: c.bt(),
            sd_present: c.sd(),
            eth_present: c.eth(),
            usb_highspeed: c.usb_highspeed(),
            multicore_present: c.multicore(),
            flash_size_kb: s.flash_kb,
            ram_size_kb: s.ram_kb,
            framebuffer_size_kb: s.framebuffer_kb,
            stream_buffer_size_kb: s.stream_buffer_kb,
            raw: s,
        }
    }
}

impl SystemInfo {
    /// The formatted system information block, one line per item (what
    /// a driver's `system_info_lines` returns), given the versions, the
    /// negotiated capabilities and whether the cam has a profile channel.
    pub fn report_lines(&self, v: &Version, caps: Caps, profiler: bool) -> Vec<String> {
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let mut l = alloc::vec![
            String::from("=== OpenMV System Information ==="),
            alloc::format!("CPU ID: 0x{:08X}", self.cpu_id),
            alloc::format!("Device ID: {}", self.device_id_hex()),
        ];
        for (i, c) in self.chip_id.iter().enumerate() {
            if *c != 0 {
                l.push(alloc::format!("CSI{i}: 0x{c:08X}"));
            }
        }
        l.push(alloc::format!(
            "USB ID: {:04X}:{:04X}",
            self.usb_vid,
            self.usb_pid
        ));
        for (name, kb) in [
            ("Flash", self.flash_size_kb),
            ("RAM", self.ram_size_kb),
            ("Framebuffer", self.framebuffer_size_kb),
            ("Stream Buffer", self.stream_buffer_size_kb),
        ] {
            if kb > 0 {
                l.push(alloc::format!("{name}: {kb} KB"));
            }
        }
        l.push("Hardware capabilities:".into());
        for (name, b) in [
            ("GPU", self.gpu_present),
            ("NPU", self.npu_present),
            ("ISP", self.isp_present),
            ("Video Encoder", self.venc_present),
            ("JPEG Encoder", self.jpeg_present),
            ("DRAM", self.dram_present),
            ("CRC Hardware", self.crc_present),
        ] {
            l.push(alloc::format!("  {name}: {}", yn(b)));
        }
        l.push(alloc::format!(
            "  PMU: {} ({} counters)",
            yn(self.pmu_present),
            self.pmu_eventcnt
        ));
        for (name, b) in [
            ("Multi-core", self.multicore_present),
            ("WiFi", self.wifi_present),
            ("Bluetooth", self.bt_present),
            ("SD Card", self.sd_present),
            ("Ethernet", self.eth_present),
            ("USB High-Speed", self.usb_highspeed),
        ] {
            l.push(alloc::format!("  {name}: {}", yn(b)));
        }
        l.push(alloc::format!(
            "Profiler: {}",
            if profiler {
                "Available"
            } else {
                "Not available"
            }
        ));
        l.push(alloc::format!("Protocol version: {}", v.protocol_triple()));
        l.push(alloc::format!(
            "Bootloader version: {}",
            v.bootloader_triple()
        ));
        l.push(alloc::format!("Firmware version: {}", v.firmware_triple()));
        l.push(alloc::format!(
            "Protocol capabilities: CRC={}, SEQ={}, ACK={}, EVENTS={}, PAYLOAD={}",
            caps.flags.crc(),
            caps.flags.seq(),
            caps.flags.ack(),
            caps.flags.events(),
            caps.max_payload
        ));
        l.push("=================================".into());
        l
    }

    /// The device id as one hex string, like the stock printout.
    pub fn device_id_hex(&self) -> String {
        self.device_id
            .iter()
            .map(|w| alloc::format!("{w:08X}"))
            .collect()
    }
}

/// A frame as read, not decoded: header and image bytes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RawFrame {
    /// The frame header.
    pub header: FrameHeader,
    /// The image bytes (after the header's offset).
    pub data: Vec<u8>,
}

/// Readiness of every channel (CHANNEL_POLL), stock `read_status()`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChannelStatus {
    /// The raw bitmap.
    pub bitmap: PollBitmap,
    /// Each known channel with its readiness, by id.
    pub channels: Vec<(ChannelEntry, bool)>,
}

impl ChannelStatus {
    /// True when the channel named `name` exists and has data ready.
    pub fn ready(&self, name: &str) -> bool {
        self.channels.iter().any(|(e, r)| *r && e.name == name)
    }

    /// True when channel `id` has data ready.
    pub fn ready_id(&self, id: ChannelId) -> bool {
        self.bitmap.is_ready(id)
    }
}

/// A profile record with the function and caller names from a firmware
/// ELF, when one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileEntry {
    /// The record as the cam sent it.
    pub record: ProfileRecord,
    /// Name of the function at `record.address`.
    pub function: Option<String>,
    /// Name of the function containing `record.caller`.
    pub caller: Option<String>,
}

/// A channel named either way, for [`GetChannel`](crate::ops::GetChannel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelKey<'a> {
    /// By name.
    Name(&'a str),
    /// By id.
    Id(ChannelId),
}

impl<'a> From<&'a str> for ChannelKey<'a> {
    fn from(s: &'a str) -> Self {
        ChannelKey::Name(s)
    }
}

impl<'a> From<&'a String> for ChannelKey<'a> {
    fn from(s: &'a String) -> Self {
        ChannelKey::Name(s)
    }
}

impl From<ChannelId> for ChannelKey<'_> {
    fn from(id: ChannelId) -> Self {
        ChannelKey::Id(id)
    }
}

impl From<u8> for ChannelKey<'_> {
    fn from(id: u8) -> Self {
        ChannelKey::Id(ChannelId(id))
    }
}

impl fmt::Display for ChannelKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelKey::Name(n) => write!(f, "{n:?}"),
            ChannelKey::Id(id) => write!(f, "#{id}"),
        }
    }
}

/// The profile table as read: the bytes, the record size from the
/// channel's shape and the cam's PMU counter count.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileData {
    /// The table's bytes.
    pub data: Vec<u8>,
    /// Bytes per record (the shape's second dimension).
    pub record_size: usize,
    /// The cam's PMU event counters (SYS_INFO).
    pub pmu_eventcnt: u8,
}

impl ProfileData {
    /// Decodes the records. The record layout fixes the event count: the
    /// cam's `pmu_eventcnt` when it fits the record size, else derived from
    /// the record size. A partial record at the end is ignored.
    pub fn records(&self) -> Result<Vec<ProfileRecord>, omv_proto::DecodeError> {
        let rsize = self.record_size;
        let pmu = self.pmu_eventcnt;
        let events = if record_size(pmu) <= rsize {
            pmu
        } else {
            u8::try_from(rsize.saturating_sub(record_size(0)) / 8).unwrap_or(u8::MAX)
        };
        let whole = self.data.len() - self.data.len() % rsize.max(1);
        decode_records(&self.data[..whole], rsize, events)
    }
}

//! Board profiles: what a simulated cam says about itself (SYS_INFO,
//! PROTO_VERSION) and the sizes its channels use.
//!
//! Five boards: OpenMV Cam H7 Plus, RT1062, N6, AE3 and H7. The values are
//! plausible for each board (CPU core, sensors, memory, hardware blocks)
//! but synthetic: the device ids are made up, and the per-board USB PIDs
//! under OpenMV's VID 0x37C5 are the simulator's own.

use std::fmt;
use std::str::FromStr;

use omv_proto::payload_for_buffer;
use omv_proto::sysinfo::{HwCaps, SysInfo};
use omv_proto::version::Version;

use crate::output::SharedOutput;
use crate::profile::ProfileConfig;
use crate::stream::StreamConfig;

/// OpenMV's USB vendor id.
pub const USB_VID: u16 = 0x37C5;
/// Protocol version every board reports.
pub const PROTOCOL_VERSION: [u8; 3] = [1, 0, 2];
/// Firmware version every board reports.
pub const FIRMWARE_VERSION: [u8; 3] = [5, 0, 0];

/// Image sensor chip id: OmniVision OV7725.
pub const SENSOR_OV7725: u32 = 0x7721;
/// Image sensor chip id: OmniVision OV5640.
pub const SENSOR_OV5640: u32 = 0x5640;
/// Image sensor chip id: PixArt PAG7936.
pub const SENSOR_PAG7936: u32 = 0x7936;
/// Image sensor chip id: Prophesee GENX320 (event sensor).
pub const SENSOR_GENX320: u32 = 0x3050_1C01;

/// A simulated board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Board {
    /// OpenMV Cam H7 Plus (STM32H743, Cortex-M7).
    H7Plus,
    /// OpenMV Cam RT1062 (i.MX RT1062, Cortex-M7).
    Rt1062,
    /// OpenMV Cam N6 (STM32N6, Cortex-M55 + NPU).
    N6,
    /// OpenMV AE3 (Alif Ensemble E3, Cortex-M55 + Ethos-U55).
    Ae3,
    /// OpenMV Cam H7 (STM32H743, Cortex-M7, no SDRAM): a 512-byte packet
    /// buffer, as on the M4 and M7 before it.
    H7,
}

impl Board {
    /// Every board, in a stable order.
    pub const ALL: [Board; 5] = [
        Board::H7Plus,
        Board::Rt1062,
        Board::N6,
        Board::Ae3,
        Board::H7,
    ];

    /// The short name parsed by [`FromStr`] ("h7plus", "rt1062", "n6", "ae3", "h7").
    pub const fn name(self) -> &'static str {
        match self {
            Board::H7Plus => "h7plus",
            Board::Rt1062 => "rt1062",
            Board::N6 => "n6",
            Board::Ae3 => "ae3",
            Board::H7 => "h7",
        }
    }

    /// The product name.
    pub const fn display_name(self) -> &'static str {
        match self {
            Board::H7Plus => "OpenMV Cam H7 Plus",
            Board::Rt1062 => "OpenMV Cam RT1062",
            Board::N6 => "OpenMV Cam N6",
            Board::Ae3 => "OpenMV AE3",
            Board::H7 => "OpenMV Cam H7",
        }
    }

    /// The short names of all boards, comma separated.
    pub fn valid_names() -> String {
        Board::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The board's full profile.
    pub fn profile(self) -> BoardProfile {
        BoardProfile::of(self)
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A board name that is not one of [`Board::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownBoard(pub String);

impl fmt::Display for UnknownBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown board {:?}; valid boards: {}",
            self.0,
            Board::valid_names()
        )
    }
}

impl std::error::Error for UnknownBoard {}

impl FromStr for Board {
    type Err = UnknownBoard;

    /// Parses a board name, case-insensitively, ignoring punctuation and an
    /// "OpenMV"/"Cam" prefix: "h7plus", "H7-Plus", "OpenMV Cam RT1062",
    /// "n6", "AE3"...
    fn from_str(s: &str) -> Result<Board, UnknownBoard> {
        let mut key: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        for prefix in ["openmv", "cam"] {
            if let Some(rest) = key.strip_prefix(prefix) {
                key = rest.to_string();
            }
        }
        Board::ALL
            .into_iter()
            .find(|b| b.name() == key)
            .ok_or_else(|| UnknownBoard(s.to_string()))
    }
}

/// Everything board-specific the simulated cam needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardProfile {
    /// Which board.
    pub board: Board,
    /// SYS_INFO payload.
    pub sysinfo: SysInfo,
    /// PROTO_VERSION payload.
    pub version: Version,
    /// stdout ring buffer size (512..=2048).
    pub stdout_capacity: usize,
    /// CPU clock in MHz.
    pub cpu_mhz: u32,
    /// Start of the code in the address space (for profile records).
    pub code_base: u32,
    /// Largest payload the cam offers: its protocol packet buffer (512,
    /// 4096 or 8192 bytes by board) minus header and CRC, so 498, 4082 or
    /// 8178 (PROTOCOL.md section 1). Announced by GET_CAPS; SET_CAPS above
    /// it is refused, and so is a longer packet.
    pub max_payload: u16,
}

const fn usb_id(pid: u16) -> u32 {
    (USB_VID as u32) << 16 | pid as u32
}

impl BoardProfile {
    /// The profile of `board`.
    pub fn of(board: Board) -> BoardProfile {
        let version = |bootloader: [u8; 3]| Version {
            protocol: PROTOCOL_VERSION,
            bootloader,
            firmware: FIRMWARE_VERSION,
        };
        let info = |cpu_id, device_id, pid, chip_id, caps: HwCaps, mem: [u32; 4]| SysInfo {
            cpu_id,
            device_id,
            usb_id: usb_id(pid),
            chip_id,
            id_reserved: [0; 2],
            hw_caps: [caps.0, 0],
            flash_kb: mem[0],
            ram_kb: mem[1],
            framebuffer_kb: mem[2],
            stream_buffer_kb: mem[3],
            mem_reserved: [0; 3],
        };
        match board {
            Board::H7Plus => BoardProfile {
                board,
                sysinfo: info(
                    0x411F_C271, // Cortex-M7 r1p1
                    [0x0032_0044, 0x3438_5111, 0x3233_3035],
                    0x124B,
                    [SENSOR_OV5640, 0, 0],
                    HwCaps::JPEG | HwCaps::DRAM | HwCaps::CRC | HwCaps::SD,
                    [32 * 1024, 1024, 16 * 1024, 1024],
                ),
                version: version([4, 0, 1]),
                stdout_capacity: 1024,
                cpu_mhz: 480,
                code_base: 0x0800_0000,
                max_payload: payload_for_buffer(4096),
            },
            Board::Rt1062 => BoardProfile {
                board,
                sysinfo: info(
                    0x411F_C271, // Cortex-M7 r1p1
                    [0x1A2B_3C4D, 0x0008_F3E1, 0x64C2_0917],
                    0x124C,
                    [SENSOR_OV5640, 0, 0],
                    HwCaps::DRAM
                        | HwCaps::CRC
                        | HwCaps::WIFI
                        | HwCaps::BT
                        | HwCaps::SD
                        | HwCaps::ETH
                        | HwCaps::USB_HIGHSPEED,
                    [16 * 1024, 1024, 16 * 1024, 512],
                ),
                version: version([4, 0, 2]),
                stdout_capacity: 1024,
                cpu_mhz: 600,
                code_base: 0x6000_0000,
                max_payload: payload_for_buffer(4096),
            },
            Board::N6 => BoardProfile {
                board,
                sysinfo: info(
                    0x411F_D221, // Cortex-M55 r1p1
                    [0x0046_0021, 0x3133_5102, 0x3830_3437],
                    0x124D,
                    [SENSOR_PAG7936, 0, 0],
                    (HwCaps::NPU
                        | HwCaps::ISP
                        | HwCaps::VENC
                        | HwCaps::JPEG
                        | HwCaps::DRAM
                        | HwCaps::CRC
                        | HwCaps::PMU
                        | HwCaps::WIFI
                        | HwCaps::BT
                        | HwCaps::SD
                        | HwCaps::USB_HIGHSPEED)
                        .with_pmu_eventcnt(8),
                    [32 * 1024, 4 * 1024, 32 * 1024, 1024],
                ),
                version: version([5, 0, 0]),
                stdout_capacity: 2048,
                cpu_mhz: 800,
                code_base: 0x7000_0000,
                max_payload: payload_for_buffer(8192),
            },
            Board::Ae3 => BoardProfile {
                board,
                sysinfo: info(
                    0x410F_D220, // Cortex-M55 r0p0
                    [0xAE30_0E31, 0x5C09_11D4, 0x0000_7A02],
                    0x124E,
                    [SENSOR_PAG7936, 0, 0],
                    (HwCaps::GPU
                        | HwCaps::NPU
                        | HwCaps::CRC
                        | HwCaps::PMU
                        | HwCaps::SD
                        | HwCaps::USB_HIGHSPEED
                        | HwCaps::MULTICORE)
                        .with_pmu_eventcnt(4),
                    [5632, 13 * 1024 + 512, 4 * 1024, 512],
                ),
                version: version([5, 0, 0]),
                stdout_capacity: 512,
                cpu_mhz: 400,
                code_base: 0x8000_0000,
                max_payload: payload_for_buffer(8192),
            },
            Board::H7 => BoardProfile {
                board,
                sysinfo: info(
                    0x411F_C271, // Cortex-M7 r1p1
                    [0x0027_0031, 0x3239_5117, 0x3532_3233],
                    0x124A,
                    [SENSOR_OV7725, 0, 0],
                    HwCaps::JPEG | HwCaps::CRC | HwCaps::SD,
                    [2 * 1024, 1024, 512, 256],
                ),
                version: version([4, 0, 1]),
                stdout_capacity: 512,
                cpu_mhz: 480,
                code_base: 0x0800_0000,
                max_payload: payload_for_buffer(512),
            },
        }
    }

    /// The hardware capability bits.
    pub fn caps(&self) -> HwCaps {
        self.sysinfo.caps()
    }

    /// PMU event counters (0 without a PMU).
    pub fn pmu_event_count(&self) -> u8 {
        if self.caps().pmu() {
            self.caps().pmu_eventcnt()
        } else {
            0
        }
    }

    /// Chip ids of the board's image sensors.
    pub fn sensors(&self) -> Vec<u32> {
        self.sysinfo.sensors().collect()
    }

    /// A stdout buffer of this board's size.
    pub fn stdout_buffer(&self) -> SharedOutput {
        SharedOutput::new(self.stdout_capacity)
    }

    /// Stream settings for this board: its stream buffer size and sensors
    /// (other fields at their defaults).
    pub fn stream_config(&self) -> StreamConfig {
        let kb = usize::try_from(self.sysinfo.stream_buffer_kb).unwrap_or(usize::MAX);
        StreamConfig {
            max_frame_bytes: kb.saturating_mul(1024),
            sensors: self.sensors(),
            ..StreamConfig::default()
        }
    }

    /// Profile settings for this board: its PMU counters, clock and code base.
    pub fn profile_config(&self) -> ProfileConfig {
        ProfileConfig {
            event_count: self.pmu_event_count(),
            cpu_mhz: self.cpu_mhz,
            code_base: self.code_base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{MAX_CAPACITY, MIN_CAPACITY};

    #[test]
    fn names_parse() {
        for b in Board::ALL {
            assert_eq!(b.name().parse::<Board>(), Ok(b));
            assert_eq!(b.name().to_uppercase().parse::<Board>(), Ok(b));
            assert_eq!(b.display_name().parse::<Board>(), Ok(b));
        }
        assert_eq!("H7-Plus".parse::<Board>(), Ok(Board::H7Plus));
        assert_eq!("h7_plus".parse::<Board>(), Ok(Board::H7Plus));
        assert_eq!(" RT1062 ".parse::<Board>(), Ok(Board::Rt1062));
        let e = "h8".parse::<Board>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"h8\""), "{msg}");
        assert!(msg.contains("h7plus, rt1062, n6, ae3, h7"), "{msg}");
        assert!("".parse::<Board>().is_err());
        assert!("openmv".parse::<Board>().is_err());
    }

    #[test]
    fn profiles_are_plausible() {
        for b in Board::ALL {
            let p = b.profile();
            assert_eq!(p.board, b);
            assert_eq!(p.sysinfo.usb_vid(), USB_VID);
            assert_eq!(p.version.protocol, [1, 0, 2]);
            assert_eq!(p.version.firmware, [5, 0, 0]);
            assert!((MIN_CAPACITY..=MAX_CAPACITY).contains(&p.stdout_capacity));
            assert_eq!(p.stdout_buffer().capacity(), p.stdout_capacity);
            assert!(!p.sensors().is_empty());
            assert!(p.sysinfo.ram_kb > 0 && p.sysinfo.stream_buffer_kb > 0);
            assert_eq!(p.stream_config().sensors, p.sensors());
            // The encoded sysinfo decodes to the same values.
            assert_eq!(SysInfo::decode(&p.sysinfo.encode()), Ok(p.sysinfo));
        }
        let pids: std::collections::HashSet<u16> = Board::ALL
            .iter()
            .map(|b| b.profile().sysinfo.usb_pid())
            .collect();
        assert_eq!(pids.len(), Board::ALL.len());
        // Per-board packet buffers: 512, 4096 and 8192 bytes.
        let payloads: Vec<u16> = Board::ALL.iter().map(|b| b.profile().max_payload).collect();
        assert_eq!(payloads, [4082, 4082, 8178, 8178, 498]);
        assert_eq!(Board::N6.profile().pmu_event_count(), 8);
        assert_eq!(Board::Ae3.profile().pmu_event_count(), 4);
        assert_eq!(Board::H7Plus.profile().pmu_event_count(), 0);
        assert!(Board::N6.profile().caps().npu());
        assert!(Board::Ae3.profile().caps().npu());
        assert!(!Board::H7Plus.profile().caps().npu());
        assert_eq!(Board::N6.profile().profile_config().event_count, 8);
        assert_eq!(
            Board::H7Plus.profile().stream_config().max_frame_bytes,
            1024 * 1024
        );
    }
}

//! SYS_INFO payload (76 bytes, section 3) and the hardware capability bits.

use core::fmt;

use crate::error::{le32, need, DecodeError};

/// Hardware capabilities (`hw_caps[0]`). Unknown bits are preserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HwCaps(pub u32);

crate::bits::bit_set!(HwCaps);

impl HwCaps {
    /// No capability.
    pub const NONE: HwCaps = HwCaps(0);
    /// GPU present.
    pub const GPU: HwCaps = HwCaps(1 << 0);
    /// NPU present.
    pub const NPU: HwCaps = HwCaps(1 << 1);
    /// ISP present.
    pub const ISP: HwCaps = HwCaps(1 << 2);
    /// Video encoder present.
    pub const VENC: HwCaps = HwCaps(1 << 3);
    /// JPEG encoder present.
    pub const JPEG: HwCaps = HwCaps(1 << 4);
    /// External DRAM present.
    pub const DRAM: HwCaps = HwCaps(1 << 5);
    /// Hardware CRC unit present.
    pub const CRC: HwCaps = HwCaps(1 << 6);
    /// Performance monitoring unit present.
    pub const PMU: HwCaps = HwCaps(1 << 7);
    /// Mask of the PMU event counter count (bits 8..=15).
    pub const PMU_EVENTCNT_MASK: u32 = 0xFF << 8;
    /// Wi-Fi present.
    pub const WIFI: HwCaps = HwCaps(1 << 16);
    /// Bluetooth present.
    pub const BT: HwCaps = HwCaps(1 << 17);
    /// SD card slot present.
    pub const SD: HwCaps = HwCaps(1 << 18);
    /// Ethernet present.
    pub const ETH: HwCaps = HwCaps(1 << 19);
    /// USB high speed.
    pub const USB_HIGHSPEED: HwCaps = HwCaps(1 << 20);
    /// More than one CPU core.
    pub const MULTICORE: HwCaps = HwCaps(1 << 21);

    /// `self` with the PMU event counter count (bits 8..=15) replaced by `n`.
    pub const fn with_pmu_eventcnt(self, n: u8) -> HwCaps {
        HwCaps((self.0 & !Self::PMU_EVENTCNT_MASK) | ((n as u32) << 8))
    }

    /// GPU present.
    pub const fn gpu(self) -> bool {
        self.contains(Self::GPU)
    }
    /// NPU present.
    pub const fn npu(self) -> bool {
        self.contains(Self::NPU)
    }
    /// ISP present.
    pub const fn isp(self) -> bool {
        self.contains(Self::ISP)
    }
    /// Video encoder present.
    pub const fn venc(self) -> bool {
        self.contains(Self::VENC)
    }
    /// JPEG encoder present.
    pub const fn jpeg(self) -> bool {
        self.contains(Self::JPEG)
    }
    /// External DRAM present.
    pub const fn dram(self) -> bool {
        self.contains(Self::DRAM)
    }
    /// Hardware CRC present.
    pub const fn crc(self) -> bool {
        self.contains(Self::CRC)
    }
    /// PMU present.
    pub const fn pmu(self) -> bool {
        self.contains(Self::PMU)
    }
    /// Number of PMU event counters (bits 8..=15); sizes profile records.
    pub const fn pmu_eventcnt(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Wi-Fi present.
    pub const fn wifi(self) -> bool {
        self.contains(Self::WIFI)
    }
    /// Bluetooth present.
    pub const fn bt(self) -> bool {
        self.contains(Self::BT)
    }
    /// SD card slot present.
    pub const fn sd(self) -> bool {
        self.contains(Self::SD)
    }
    /// Ethernet present.
    pub const fn eth(self) -> bool {
        self.contains(Self::ETH)
    }
    /// USB high speed.
    pub const fn usb_highspeed(self) -> bool {
        self.contains(Self::USB_HIGHSPEED)
    }
    /// More than one CPU core.
    pub const fn multicore(self) -> bool {
        self.contains(Self::MULTICORE)
    }
}

impl fmt::Debug for HwCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 14] = [
            (1 << 0, "GPU"),
            (1 << 1, "NPU"),
            (1 << 2, "ISP"),
            (1 << 3, "VENC"),
            (1 << 4, "JPEG"),
            (1 << 5, "DRAM"),
            (1 << 6, "CRC"),
            (1 << 7, "PMU"),
            (1 << 16, "WIFI"),
            (1 << 17, "BT"),
            (1 << 18, "SD"),
            (1 << 19, "ETH"),
            (1 << 20, "USB_HIGHSPEED"),
            (1 << 21, "MULTICORE"),
        ];
        f.write_str("HwCaps(")?;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let r = if first { Ok(()) } else { f.write_str("|") };
            first = false;
            r
        };
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                sep(f)?;
                f.write_str(name)?;
            }
        }
        if self.pmu_eventcnt() != 0 {
            sep(f)?;
            write!(f, "pmu_eventcnt={}", self.pmu_eventcnt())?;
        }
        let rest = self.0 & 0xFFC0_0000;
        if rest != 0 {
            sep(f)?;
            write!(f, "{rest:#x}")?;
        }
        f.write_str(")")
    }
}

/// The cam's system information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SysInfo {
    /// CPU id.
    pub cpu_id: u32,
    /// Unique device id.
    pub device_id: [u32; 3],
    /// USB id: VID << 16 | PID.
    pub usb_id: u32,
    /// Chip id of each detected image sensor (0 = none).
    pub chip_id: [u32; 3],
    /// Reserved (after the ids).
    pub id_reserved: [u32; 2],
    /// Hardware capabilities; `hw_caps[0]` is [`HwCaps`], `hw_caps[1]` is reserved.
    pub hw_caps: [u32; 2],
    /// Flash size in KiB.
    pub flash_kb: u32,
    /// RAM size in KiB.
    pub ram_kb: u32,
    /// Frame buffer size in KiB.
    pub framebuffer_kb: u32,
    /// Stream buffer size in KiB.
    pub stream_buffer_kb: u32,
    /// Reserved (after the memory sizes).
    pub mem_reserved: [u32; 3],
}

impl SysInfo {
    /// Size of the payload on the wire.
    pub const LEN: usize = 76;
    const WORDS: usize = Self::LEN / 4;

    /// USB vendor id (high half of `usb_id`).
    pub const fn usb_vid(&self) -> u16 {
        (self.usb_id >> 16) as u16
    }

    /// USB product id (low half of `usb_id`).
    pub const fn usb_pid(&self) -> u16 {
        self.usb_id as u16
    }

    /// The capability bits of `hw_caps[0]`.
    pub const fn caps(&self) -> HwCaps {
        HwCaps(self.hw_caps[0])
    }

    /// Chip ids of the detected image sensors (non-zero entries of `chip_id`).
    pub fn sensors(&self) -> impl Iterator<Item = u32> + '_ {
        self.chip_id.iter().copied().filter(|&c| c != 0)
    }

    fn words(&self) -> [u32; Self::WORDS] {
        let mut w = [0u32; Self::WORDS];
        w[0] = self.cpu_id;
        w[1..4].copy_from_slice(&self.device_id);
        w[4] = self.usb_id;
        w[5..8].copy_from_slice(&self.chip_id);
        w[8..10].copy_from_slice(&self.id_reserved);
        w[10..12].copy_from_slice(&self.hw_caps);
        w[12] = self.flash_kb;
        w[13] = self.ram_kb;
        w[14] = self.framebuffer_kb;
        w[15] = self.stream_buffer_kb;
        w[16..19].copy_from_slice(&self.mem_reserved);
        w
    }

    /// Encodes the 76-byte payload.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        for (i, v) in self.words().iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes the payload; needs at least 76 bytes, extra bytes are ignored.
    pub fn decode(payload: &[u8]) -> Result<SysInfo, DecodeError> {
        need("sysinfo", payload, Self::LEN)?;
        let w = |i: usize| le32(payload, i * 4);
        Ok(SysInfo {
            cpu_id: w(0),
            device_id: [w(1), w(2), w(3)],
            usb_id: w(4),
            chip_id: [w(5), w(6), w(7)],
            id_reserved: [w(8), w(9)],
            hw_caps: [w(10), w(11)],
            flash_kb: w(12),
            ram_kb: w(13),
            framebuffer_kb: w(14),
            stream_buffer_kb: w(15),
            mem_reserved: [w(16), w(17), w(18)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let s = SysInfo {
            cpu_id: 0xC27,
            device_id: [0x11, 0x22, 0x33],
            usb_id: 0x37C5_9206,
            chip_id: [0x2642, 0, 0],
            id_reserved: [0, 0],
            hw_caps: [(HwCaps::JPEG | HwCaps::PMU).with_pmu_eventcnt(6).0, 0],
            flash_kb: 2048,
            ram_kb: 1024,
            framebuffer_kb: 512,
            stream_buffer_kb: 256,
            mem_reserved: [1, 2, 3],
        };
        let b = s.encode();
        assert_eq!(b.len(), 76);
        assert_eq!(&b[0..4], &[0x27, 0x0C, 0, 0]);
        assert_eq!(&b[4..16], &[0x11, 0, 0, 0, 0x22, 0, 0, 0, 0x33, 0, 0, 0]);
        assert_eq!(&b[16..20], &[0x06, 0x92, 0xC5, 0x37]);
        assert_eq!(&b[20..24], &[0x42, 0x26, 0, 0]);
        assert_eq!(&b[40..44], &[0x90, 0x06, 0, 0]);
        assert_eq!(&b[48..52], &[0, 8, 0, 0]);
        assert_eq!(&b[60..64], &[0, 1, 0, 0]);
        assert_eq!(&b[64..76], &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(SysInfo::decode(&b), Ok(s));
        assert!(SysInfo::decode(&b[..75]).is_err());
        assert_eq!(s.usb_vid(), 0x37C5);
        assert_eq!(s.usb_pid(), 0x9206);
        assert_eq!(s.sensors().count(), 1);
        let c = s.caps();
        assert!(c.jpeg() && c.pmu() && !c.gpu() && !c.wifi());
        assert_eq!(c.pmu_eventcnt(), 6);
    }

    #[test]
    fn hw_caps_bits() {
        let all = [
            (HwCaps::GPU, HwCaps::gpu as fn(HwCaps) -> bool),
            (HwCaps::NPU, HwCaps::npu),
            (HwCaps::ISP, HwCaps::isp),
            (HwCaps::VENC, HwCaps::venc),
            (HwCaps::JPEG, HwCaps::jpeg),
            (HwCaps::DRAM, HwCaps::dram),
            (HwCaps::CRC, HwCaps::crc),
            (HwCaps::PMU, HwCaps::pmu),
            (HwCaps::WIFI, HwCaps::wifi),
            (HwCaps::BT, HwCaps::bt),
            (HwCaps::SD, HwCaps::sd),
            (HwCaps::ETH, HwCaps::eth),
            (HwCaps::USB_HIGHSPEED, HwCaps::usb_highspeed),
            (HwCaps::MULTICORE, HwCaps::multicore),
        ];
        for (bit, get) in all {
            assert!(get(bit));
            assert!(!get(HwCaps(!bit.0)));
        }
        assert_eq!(HwCaps::MULTICORE.0, 0x0020_0000);
        let c = HwCaps(0xFFFF_FFFF).with_pmu_eventcnt(2);
        assert_eq!(c.0, 0xFFFF_02FF);
        assert_eq!(c.pmu_eventcnt(), 2);
        assert_eq!(
            alloc::format!("{:?}", HwCaps::GPU.with_pmu_eventcnt(3)),
            "HwCaps(GPU|pmu_eventcnt=3)"
        );
    }
}

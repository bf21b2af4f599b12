//! Function-symbol lookup in a firmware ELF, for naming the addresses the
//! cam's `profile` channel reports (PROTOCOL.md section 9).
//!
//! [`SymbolTable::from_elf_bytes`] collects every defined function symbol
//! (ELF `STT_FUNC`/`STT_GNU_IFUNC`) from `.symtab`, or from `.dynsym` when
//! the file has no static symbols. On ARM the Thumb bit (bit 0) is cleared
//! from symbol addresses and from looked-up addresses, so return addresses
//! and function pointers taken on a Cortex-M match their functions.
//!
//! A symbol with a size covers `[address, address + size)`. A symbol with
//! size 0 (hand-written assembly without `.size`) is taken to run up to the
//! next function symbol in the same section, or to cover only its own
//! address when it is the last one. When several symbols share an address
//! (aliases) one is kept: a sized one over an unsized one, then a global over
//! a local or weak one, then the alphabetically first name. When symbols
//! nest, [`SymbolTable::lookup`] returns the innermost one (the latest start
//! that still contains the address).

use object::{Architecture, Object, ObjectSymbol, SymbolKind, SymbolScope};
use thiserror::Error;

/// Why an ELF could not give a symbol table.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// The bytes are not a parseable ELF file.
    #[error("cannot parse ELF: {0}")]
    Parse(String),
    /// The ELF has no defined function symbols (e.g. it was stripped).
    #[error("the ELF has no function symbols (stripped?)")]
    NoSymbols,
}

/// One function symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// Start address (Thumb bit cleared on ARM).
    pub address: u64,
    /// Size in bytes as the ELF gives it (0 when unknown).
    pub size: u64,
    /// The symbol name, as stored (not demangled).
    pub name: String,
}

/// A lookup table of function symbols sorted by address.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// Sorted by `address`, one entry per address.
    entries: Vec<FunctionSymbol>,
    /// Exclusive end of each entry's range (see the module docs for size 0).
    ends: Vec<u64>,
    /// `max_end[i]` = the largest of `ends[..=i]`, to stop backward scans.
    max_end: Vec<u64>,
    /// Mask applied to looked-up addresses (clears the Thumb bit on ARM).
    addr_mask: u64,
}

/// A candidate symbol while building the table.
struct Candidate {
    sym: FunctionSymbol,
    section: Option<usize>,
    global: bool,
}

impl Candidate {
    /// Sort key for choosing among aliases: smaller is better.
    fn rank(&self) -> (bool, bool, &str) {
        (self.sym.size == 0, !self.global, self.sym.name.as_str())
    }
}

/// Defined, named function symbols from one symbol table.
fn collect<'data, S: ObjectSymbol<'data>>(
    syms: impl Iterator<Item = S>,
    addr_mask: u64,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for s in syms {
        if s.kind() != SymbolKind::Text || !s.is_definition() {
            continue;
        }
        let name = match s.name() {
            Ok(n) if !n.is_empty() => n.to_string(),
            _ => continue,
        };
        out.push(Candidate {
            sym: FunctionSymbol {
                address: s.address() & addr_mask,
                size: s.size(),
                name,
            },
            section: s.section_index().map(|i| i.0),
            global: s.scope() == SymbolScope::Dynamic && !s.is_weak(),
        });
    }
    out
}

impl SymbolTable {
    /// Parses an ELF image (32- or 64-bit, either endianness) and collects
    /// its function symbols.
    pub fn from_elf_bytes(data: &[u8]) -> Result<SymbolTable, SymbolError> {
        let file = object::File::parse(data).map_err(|e| SymbolError::Parse(e.to_string()))?;
        let addr_mask = if file.architecture() == Architecture::Arm {
            !1u64
        } else {
            !0u64
        };

        let mut cands = collect(file.symbols(), addr_mask);
        if cands.is_empty() {
            cands = collect(file.dynamic_symbols(), addr_mask);
        }
        if cands.is_empty() {
            return Err(SymbolError::NoSymbols);
        }
        Ok(Self::build(cands, addr_mask))
    }

    fn build(mut cands: Vec<Candidate>, addr_mask: u64) -> SymbolTable {
        cands.sort_by(|a, b| {
            a.sym
                .address
                .cmp(&b.sym.address)
                .then_with(|| a.rank().cmp(&b.rank()))
        });
        cands.dedup_by(|later, kept| later.sym.address == kept.sym.address);

        let mut ends = Vec::with_capacity(cands.len());
        for (i, c) in cands.iter().enumerate() {
            let end = if c.sym.size > 0 {
                c.sym.address.saturating_add(c.sym.size)
            } else {
                cands[i + 1..]
                    .iter()
                    .find(|n| n.section == c.section)
                    .map(|n| n.sym.address)
                    .unwrap_or_else(|| c.sym.address.saturating_add(1))
            };
            ends.push(end);
        }
        let mut max_end = Vec::with_capacity(ends.len());
        let mut m = 0u64;
        for &e in &ends {
            m = m.max(e);
            max_end.push(m);
        }
        SymbolTable {
            entries: cands.into_iter().map(|c| c.sym).collect(),
            ends,
            max_end,
            addr_mask,
        }
    }

    /// The name of the function containing `addr`, if any.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        self.lookup_symbol(addr).map(|s| s.name.as_str())
    }

    /// The function containing `addr` and the offset of `addr` into it.
    pub fn lookup_symbol(&self, addr: u64) -> Option<&FunctionSymbol> {
        let addr = addr & self.addr_mask;
        // Entries with address <= addr are entries[..n].
        let n = self.entries.partition_point(|e| e.address <= addr);
        let mut i = n;
        while i > 0 {
            i -= 1;
            if self.max_end[i] <= addr {
                // Nothing at or before i reaches addr.
                return None;
            }
            if addr < self.ends[i] {
                return self.entries.get(i);
            }
        }
        None
    }

    /// Number of distinct function addresses in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table holds no symbol (only possible for
    /// [`SymbolTable::default`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All symbols, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = &FunctionSymbol> {
        self.entries.iter()
    }
}

impl crate::ProfileData {
    /// The records, with the functions at their addresses and callers
    /// named from `symbols` when given (what a driver's `read_profile`
    /// returns).
    pub fn entries(
        &self,
        symbols: Option<&SymbolTable>,
    ) -> crate::Result<Vec<crate::ProfileEntry>> {
        let records = self.records().map_err(|source| crate::Error::Malformed {
            what: "profile records",
            source,
        })?;
        let name = |a: u32| {
            symbols
                .and_then(|s| s.lookup(u64::from(a)))
                .map(str::to_string)
        };
        Ok(records
            .into_iter()
            .map(|record| crate::ProfileEntry {
                function: name(record.address),
                caller: name(record.caller),
                record,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WObject, Symbol, SymbolSection};
    use object::{BinaryFormat, Endianness, SectionKind, SymbolFlags};

    fn func(section: object::write::SectionId, name: &str, value: u64, size: u64) -> Symbol {
        Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        }
    }

    /// An ARM ELF relocatable object: symbol values are section offsets,
    /// which is all the table needs.
    fn arm_elf() -> Vec<u8> {
        let mut obj = WObject::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
        let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
        obj.append_section_data(text, &[0u8; 0x100], 4);
        // Thumb functions carry bit 0 in st_value.
        obj.add_symbol(func(text, "main", 0x11, 0x20));
        obj.add_symbol(func(text, "helper", 0x41, 0x10));
        // An alias of main that should lose to it (local scope).
        let mut alias = func(text, "main_alias", 0x11, 0x20);
        alias.scope = SymbolScope::Compilation;
        obj.add_symbol(alias);
        // Unsized assembly routine, followed by a sized one.
        obj.add_symbol(func(text, "asm_thing", 0x81, 0));
        obj.add_symbol(func(text, "after_asm", 0xA1, 0x8));
        // A data object must be ignored.
        let mut data = func(text, "a_table", 0xC0, 0x20);
        data.kind = SymbolKind::Data;
        obj.add_symbol(data);
        obj.write().expect("write ELF")
    }

    #[test]
    fn arm_lookup_strips_thumb_bit() {
        let t = SymbolTable::from_elf_bytes(&arm_elf()).unwrap();
        let names: Vec<_> = t.iter().map(|s| (s.address, s.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (0x10, "main"),
                (0x40, "helper"),
                (0x80, "asm_thing"),
                (0xA0, "after_asm")
            ]
        );
        assert_eq!(t.lookup(0x10), Some("main"));
        assert_eq!(t.lookup(0x11), Some("main"));
        assert_eq!(t.lookup(0x2F), Some("main"));
        assert_eq!(t.lookup(0x30), None);
        assert_eq!(t.lookup(0x0F), None);
        assert_eq!(t.lookup(0x45), Some("helper"));
        assert_eq!(t.lookup(0x50), None);
        // Unsized: runs up to the next function.
        assert_eq!(t.lookup(0x9F), Some("asm_thing"));
        assert_eq!(t.lookup(0xA7), Some("after_asm"));
        assert_eq!(t.lookup(0xA8), None);
        // Data symbols are not functions.
        assert_eq!(t.lookup(0xC4), None);
        assert_eq!(t.lookup(u64::MAX), None);
    }

    #[test]
    fn nested_symbols_prefer_innermost_then_outer() {
        let mut obj = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
        obj.append_section_data(text, &[0u8; 0x200], 16);
        obj.add_symbol(func(text, "outer", 0x100, 0x100));
        obj.add_symbol(func(text, "inner", 0x120, 0x10));
        obj.add_symbol(func(text, "odd", 0x101, 0x1));
        let t = SymbolTable::from_elf_bytes(&obj.write().unwrap()).unwrap();
        assert_eq!(t.lookup(0x100), Some("outer"));
        // No Thumb masking on x86: 0x101 is its own symbol.
        assert_eq!(t.lookup(0x101), Some("odd"));
        assert_eq!(t.lookup(0x125), Some("inner"));
        // Past inner's end, still inside outer.
        assert_eq!(t.lookup(0x150), Some("outer"));
        assert_eq!(t.lookup(0x200), None);
        assert_eq!(t.lookup_symbol(0x150).map(|s| s.size), Some(0x100));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            SymbolTable::from_elf_bytes(b"not an elf at all"),
            Err(SymbolError::Parse(_))
        ));
        assert!(matches!(
            SymbolTable::from_elf_bytes(&[]),
            Err(SymbolError::Parse(_))
        ));
        let obj = WObject::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
        assert!(matches!(
            SymbolTable::from_elf_bytes(&obj.write().unwrap()),
            Err(SymbolError::NoSymbols)
        ));
        let empty = SymbolTable::default();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(0), None);
    }

    #[test]
    fn truncated_and_corrupted_elf_never_panics() {
        let elf = arm_elf();
        for cut in 0..elf.len() {
            let _ = SymbolTable::from_elf_bytes(&elf[..cut]);
        }
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..2000 {
            let mut bad = elf.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % bad.len() as u64) as usize;
                bad[i] ^= (state >> 32) as u8 | 1;
            }
            if let Ok(t) = SymbolTable::from_elf_bytes(&bad) {
                for a in [0u64, 0x10, 0x45, 0x9F, u64::MAX] {
                    let _ = t.lookup(a);
                }
            }
        }
    }
}

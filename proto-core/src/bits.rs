//! The set operations shared by the protocol's bit-field newtypes
//! ([`Flags`](crate::Flags), [`CapFlags`](crate::caps::CapFlags),
//! [`ChannelFlags`](crate::ChannelFlags), [`HwCaps`](crate::sysinfo::HwCaps),
//! [`Ops`](crate::backend::Ops)).

/// Implements `contains`, `intersects`, `with`, `without`, `set` and `|`
/// for a `struct $t(pub $int)` bit field.
macro_rules! bit_set {
    ($t:ident) => {
        impl $t {
            /// True if every bit of `other` is set.
            pub const fn contains(self, other: $t) -> bool {
                self.0 & other.0 == other.0
            }

            /// True if any bit of `other` is set.
            pub const fn intersects(self, other: $t) -> bool {
                self.0 & other.0 != 0
            }

            /// `self` with the bits of `other` set.
            pub const fn with(self, other: $t) -> $t {
                $t(self.0 | other.0)
            }

            /// `self` with the bits of `other` cleared.
            pub const fn without(self, other: $t) -> $t {
                $t(self.0 & !other.0)
            }

            /// `self` with the bits of `other` set when `on`, cleared otherwise.
            pub const fn set(self, other: $t, on: bool) -> $t {
                if on {
                    self.with(other)
                } else {
                    self.without(other)
                }
            }
        }

        impl core::ops::BitOr for $t {
            type Output = $t;
            fn bitor(self, rhs: $t) -> $t {
                self.with(rhs)
            }
        }
    };
}

pub(crate) use bit_set;

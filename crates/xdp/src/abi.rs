//! Every type and constant the XDP program shares with userspace, generated
//! at build time from `ebpf/include/dce_filter.h` (see `build/abi.rs`): the
//! header is the one truth, so a constant, enum member or struct added there
//! is here without anyone writing it, and one that is removed there breaks
//! the build of whatever still uses it.
//!
//! What the generator produces: every `#define DCE_X` as `X` (`u32` when the
//! header writes it unsigned, else `usize`); the members of `enum
//! dce_counter` in [`slot`], of `enum dce_ban_reason` in [`ban_reason`], the
//! others at the top; [`DropReason`] from the `DCE_DROP_*` slots; every
//! `struct dce_x` as `X` (`#[repr(C)]`, `aya::Pod`); and [`LAYOUTS`], which
//! the test below holds against the compiled object's BTF, so the generated
//! layouts are the ones clang compiled.

include!(concat!(env!("OUT_DIR"), "/abi.rs"));

/// The layout of one struct of the header as Rust lays it out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The C name (`dce_ban`).
    pub c_name: &'static str,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// Each member's name and byte offset, in order.
    pub members: &'static [(&'static str, usize)],
}

#[cfg(test)]
mod tests {
    use super::*;
    use btf_rs::{Btf, Type};

    /// The object's BTF, read with the btf-rs crate.
    fn btf() -> Btf {
        use object::{Object, ObjectSection};
        let file = object::File::parse(crate::OBJECT).expect("the embedded object is ELF");
        let section = file
            .section_by_name(".BTF")
            .expect("the object carries BTF (built with -g)")
            .data()
            .expect("BTF section readable");
        Btf::from_bytes(section).expect("the object's BTF parses")
    }

    #[test]
    fn every_generated_struct_has_the_compiled_layout() {
        let btf = btf();
        for Layout {
            c_name,
            size,
            members,
        } in LAYOUTS
        {
            let types = btf
                .resolve_types_by_name(c_name)
                .unwrap_or_else(|e| panic!("struct {c_name} is not in the object's BTF: {e}"));
            let s = types
                .iter()
                .find_map(|t| match t {
                    Type::Struct(s) => Some(s),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{c_name} is not a struct in the object's BTF"));
            assert_eq!(s.size(), *size, "size of struct {c_name}");
            let compiled: Vec<(String, usize)> = s
                .members
                .iter()
                .map(|m| {
                    let name = btf.resolve_name(m).expect("member name");
                    (name, m.bit_offset() as usize / 8)
                })
                .collect();
            let generated: Vec<(String, usize)> =
                members.iter().map(|(n, o)| (n.to_string(), *o)).collect();
            assert_eq!(compiled, generated, "members of struct {c_name}");
        }
    }

    #[test]
    fn drop_reasons_are_the_first_slots_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i);
            assert_eq!(DropReason::from_slot(i), Some(*r));
        }
        assert_eq!(DropReason::COUNT, slot::DROP_REASONS);
        assert_eq!(DropReason::from_slot(slot::PASSED), None);
        assert_eq!(DropReason::NotSip.name(), "not_sip");
        assert_eq!(DropReason::Unverified.slot(), slot::DROP_UNVERIFIED);
    }
}

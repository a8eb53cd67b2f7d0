//! Pin folders that outlived their filter: the interface was deleted, the
//! process died without removing them, or the namespace is gone and a new
//! one got its inode (and so its folder). Only a folder whose program is
//! attached to the interface it is named for counts as a running filter.

use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::privileged_or_skip;
use xdp::loader::{pin_dir_for, pin_state, running_ifaces, PinState};
use xdp::{AttachMode, Filter, Pinned};

use super::program::pass_mode;

/// Two namespaces joined by a veth, the test's end up; `f` runs inside the
/// second namespace with its interface's name. The namespaces are returned
/// so that a test can delete links in them.
fn with_veth<R: Send>(test: &str, f: impl FnOnce(&Netns, &Netns, String) -> R + Send) -> Option<R> {
    if !privileged_or_skip(test) {
        return None;
    }
    let a = Netns::create("xsa").unwrap();
    let b = Netns::create("xsb").unwrap();
    let (ia, ib) = (unique_name("sa"), unique_name("sb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    b.ip(&["link", "set", &ib, "up"]).unwrap();
    Some(b.enter(|| f(&a, &b, ib)).unwrap())
}

/// Pins the maps of a filter loaded and then dropped without attaching,
/// where a filter on `iface` (in this namespace) would: what a filter
/// killed on that interface leaves. Returns the folder.
fn leave_orphaned_pins(iface: &str) -> std::path::PathBuf {
    let mut gone = Filter::load_unattached(&pass_mode()).unwrap();
    let dir = pin_dir_for(iface).unwrap();
    xdp::loader::private_pin_dirs(&dir, true).unwrap();
    for (name, map) in gone.maps().named() {
        map.pin(dir.join(name)).unwrap();
    }
    // Dropping it unloads the program; only the pins stay.
    dir
}

#[test]
fn a_filter_attached_here_is_listed_as_running() {
    with_veth(
        "a_filter_attached_here_is_listed_as_running",
        |_, _, iface| {
            let filter = Filter::load(&pass_mode(), &iface, AttachMode::Generic).unwrap();
            let dir = filter.pin_dir().unwrap().to_path_buf();
            assert_eq!(pin_state(&dir, &iface), PinState::Running);
            assert_eq!(running_ifaces().unwrap(), vec![iface.clone()]);
            assert_eq!(Pinned::open_only().unwrap().iface(), iface);
            drop(filter);
            assert!(running_ifaces().unwrap().is_empty());
        },
    );
}

#[test]
fn the_pins_of_a_filter_whose_veth_was_deleted_are_not_a_running_filter() {
    with_veth(
        "the_pins_of_a_filter_whose_veth_was_deleted_are_not_a_running_filter",
        |_, b, iface| {
            let filter = Filter::load(&pass_mode(), &iface, AttachMode::Generic).unwrap();
            let dir = filter.pin_dir().unwrap().to_path_buf();
            b.ip(&["link", "del", &iface]).unwrap();
            assert!(
                !running_ifaces().unwrap().contains(&iface),
                "a filter on a deleted veth is listed as running"
            );
            match pin_state(&dir, &iface) {
                PinState::Stale { reason, orphaned } => {
                    assert!(reason.contains("no interface"), "{reason}");
                    assert_eq!(orphaned, None, "its program is still loaded");
                }
                other => panic!("{other:?}"),
            }
            // Its owner still runs: the listing leaves its pins to it.
            assert!(dir.is_dir(), "a live filter's pins were removed");
            drop(filter);
            assert!(!dir.exists());
        },
    );
}

#[test]
fn pins_no_loaded_program_uses_are_not_listed_and_are_removed() {
    with_veth(
        "pins_no_loaded_program_uses_are_not_listed_and_are_removed",
        |_, _, iface| {
            // On an interface that exists here, with nothing attached.
            let here = leave_orphaned_pins(&iface);
            // Named for an interface this namespace does not have: what a
            // namespace that got a dead one's inode finds in its folder.
            let ghost = unique_name("gh");
            let elsewhere = leave_orphaned_pins(&ghost);
            match pin_state(&here, &iface) {
                PinState::Stale { reason, orphaned } => {
                    assert!(reason.contains("no XDP program"), "{reason}");
                    assert!(orphaned.is_some(), "no program uses these maps");
                }
                other => panic!("{other:?}"),
            }
            assert!(running_ifaces().unwrap().is_empty());
            assert!(!here.exists(), "{} left", here.display());
            assert!(!elsewhere.exists(), "{} left", elsewhere.display());
        },
    );
}

#[test]
fn a_stale_folder_does_not_make_the_only_running_filter_ambiguous() {
    with_veth(
        "a_stale_folder_does_not_make_the_only_running_filter_ambiguous",
        |_, _, iface| {
            let ghost = unique_name("gh");
            leave_orphaned_pins(&ghost);
            let filter = Filter::load(&pass_mode(), &iface, AttachMode::Generic).unwrap();
            let only = Pinned::open_only().unwrap();
            assert_eq!(only.iface(), iface);
            drop(only);
            drop(filter);
        },
    );
}

#[test]
fn a_namespace_removes_the_pins_left_in_it_and_keeps_a_running_filters() {
    if !privileged_or_skip("a_namespace_removes_the_pins_left_in_it_and_keeps_a_running_filters") {
        return;
    }
    let a = Netns::create("xsa").unwrap();
    let b = Netns::create("xsb").unwrap();
    let (ia, ib) = (unique_name("sa"), unique_name("sb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    let (filter, live, dead) = b
        .enter(|| {
            let filter = Filter::load(&pass_mode(), &ib, AttachMode::Generic).unwrap();
            let live = filter.pin_dir().unwrap().to_path_buf();
            (filter, live, leave_orphaned_pins(&unique_name("gh")))
        })
        .unwrap();
    assert_eq!(b.remove_dead_pins().unwrap(), vec![dead.clone()]);
    assert!(!dead.exists());
    assert!(live.is_dir(), "the running filter's pins were removed");
    drop(filter);
    assert!(!live.exists());

    // What a filter killed in the namespace left goes with the namespace.
    let dead = b.enter(|| leave_orphaned_pins(&ib)).unwrap();
    assert!(dead.is_dir());
    drop(b);
    assert!(!dead.exists(), "{} outlived its namespace", dead.display());
}

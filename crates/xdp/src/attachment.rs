//! What the kernel says is attached where: the XDP program on an interface
//! of the calling thread's network namespace (rtnetlink, as `ip link`
//! reads it), and which loaded programs use a pinned map. Pins outlive the
//! process and the interface they were made for, so they are checked
//! against these before they are believed.

use std::io;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// An interface of this namespace as rtnetlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its index in this namespace.
    pub ifindex: u32,
    /// The id of the XDP program attached to it (any mode), if one is.
    pub xdp_program: Option<u32>,
}

/// The interface named `iface` in the calling thread's network namespace
/// and the XDP program attached to it; `None` when there is no such
/// interface.
pub fn link(iface: &str) -> io::Result<Option<Link>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut found = None;
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut at = 0;
        while at < data.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                .map_err(|e| io::Error::other(format!("RTM_GETLINK answer: {e}")))?;
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            at += len;
            if msg.header.sequence_number != 1 {
                continue;
            }
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(found),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    let named = l
                        .attributes
                        .iter()
                        .any(|a| matches!(a, LinkAttribute::IfName(n) if n == iface));
                    if named {
                        found = Some(Link {
                            ifindex: l.header.index,
                            xdp_program: l.attributes.iter().find_map(|a| match a {
                                LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                                    LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                                    _ => None,
                                }),
                                _ => None,
                            }),
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

/// The kernel's id of the map pinned at `pin`.
pub fn pinned_map_id(pin: &Path) -> io::Result<u32> {
    aya::maps::MapInfo::from_pin(pin)
        .map(|m| m.id())
        .map_err(|e| io::Error::other(format!("{}: {e}", pin.display())))
}

/// Whether the loaded program `program` uses the map `map`; `None` when
/// that cannot be told (the program is gone, or its maps cannot be read).
pub fn program_uses_map(program: u32, map: u32) -> Option<bool> {
    for p in aya::programs::loaded_programs().flatten() {
        if p.id() == program {
            return p.map_ids().ok().flatten().map(|ids| ids.contains(&map));
        }
    }
    None
}

/// Whether any loaded program uses the map `map`: `Some(false)` means no
/// program can read or write it any more, so whatever pinned it is gone.
/// `None` when the kernel's list of programs cannot be read in full (no
/// CAP_SYS_ADMIN).
pub fn map_in_use(map: u32) -> Option<bool> {
    for p in aya::programs::loaded_programs() {
        match p {
            Ok(p) => match p.map_ids() {
                Ok(Some(ids)) if ids.contains(&map) => return Some(true),
                Ok(Some(_)) => {}
                Err(e) if gone(&e) => {}
                Ok(None) | Err(_) => return None,
            },
            // Unloaded between its id and its descriptor: it uses nothing.
            Err(e) if gone(&e) => {}
            Err(_) => return None,
        }
    }
    Some(false)
}

/// True when the error says the program no longer exists.
fn gone(e: &aya::programs::ProgramError) -> bool {
    matches!(
        e,
        aya::programs::ProgramError::SyscallError(s)
            if s.io_error.raw_os_error() == Some(libc::ENOENT)
    )
}

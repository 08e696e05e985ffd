//! A small synchronous rtnetlink client (rtnetlink(7)): veth pairs, IPv4 addresses, link
//! state and the default route. Plain blocking sockets, no tokio and no threads, so the
//! zygote (one thread, host network namespace), a sandbox's PID 1 (its own namespace) and
//! the runner's threads can all use it.
//!
//! It owns the framing of requests and the checking of replies: every request asks for an
//! ack (`NLM_F_ACK`) and waits for it, replies are matched by sequence number and sender,
//! dumps are read across datagrams up to `NLMSG_DONE`. `netlink-packet-route` encodes and
//! decodes the messages. It must not choose names, addresses or namespaces: callers pass
//! them.
//!
//! A `NETLINK_ROUTE` socket acts in the network namespace its opener was in when it was
//! opened, wherever that thread goes afterwards (network_namespaces(7)).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType};
use netlink_packet_route::{AddressFamily as Family, RouteNetlinkMessage};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recvmsg, sendto, socket,
};

/// The receive buffer. The kernel caps one datagram of a dump at 32 KiB
/// (`netlink_recvmsg` in net/netlink/af_netlink.c); a larger one is refused as truncated.
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// `IFNAMSIZ` less its NUL.
const IFNAME_MAX_BYTES: usize = 15;
/// How often a dump that the kernel flagged `NLM_F_DUMP_INTR` (the table changed while
/// it was read) is started again before giving up with `EAGAIN`.
const DUMP_ATTEMPTS: usize = 3;

/// A failed rtnetlink operation: the kernel's `NLMSG_ERROR` code, or the local check or
/// syscall that failed first (`EINVAL` for a bad name, `EBADMSG` for an undecodable reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rtnetlink {op} failed")]
pub(crate) struct NetlinkError {
    /// The `Rtnl` method.
    pub(crate) op: &'static str,
    /// The cause.
    #[source]
    pub(crate) errno: Errno,
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// The replies to one request, in order, without the final ack or `NLMSG_DONE`.
#[derive(Debug, Default)]
struct Replies {
    messages: Vec<RouteNetlinkMessage>,
    /// A dump's `NLM_F_DUMP_INTR`: its messages may be inconsistent.
    interrupted: bool,
}

/// A `NETLINK_ROUTE` socket (close-on-exec) bound in the caller's network namespace at
/// `open` time.
#[derive(Debug)]
pub(crate) struct Rtnl {
    fd: OwnedFd,
    /// The last request's sequence number.
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens and binds a socket; the kernel picks its port id.
    pub(crate) fn open() -> Result<Self> {
        let fail = |errno| NetlinkError { op: "open", errno };
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
            .map_err(fail)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(fail)?;
        Ok(Self { fd, seq: 0, buf: vec![0; RECV_BUFFER_BYTES] })
    }

    /// Creates a veth pair: `host` stays in the current namespace; its peer, named `peer`,
    /// is created directly in the network namespace of process `ns_pid` (`IFLA_NET_NS_PID`
    /// in the peer's `VETH_INFO_PEER`), so it never appears here. Returns the host end's
    /// ifindex. `EEXIST` if `host` exists here (or `peer` there). Both ends are down.
    pub(crate) fn add_veth(&mut self, host: &str, peer: &str, ns_pid: i32) -> Result<u32> {
        let fail = |errno| NetlinkError { op: "add_veth", errno };
        check_name(host).and(check_name(peer)).map_err(fail)?;
        let ns_pid = u32::try_from(ns_pid).ok().filter(|&p| p > 0).ok_or(fail(Errno::EINVAL))?;
        let mut peer_link = LinkMessage::default();
        peer_link.attributes = vec![LinkAttribute::IfName(peer.to_owned()), LinkAttribute::NetNsPid(ns_pid)];
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL).map_err(fail)?;
        // RTM_NEWLINK's ack carries no ifindex: ask for it.
        self.index_of(host).map_err(fail)?.ok_or(fail(Errno::ENODEV))
    }

    /// Adds `addr/prefix_len` to link `ifindex` (as `ip addr add` does: `IFA_LOCAL` and
    /// `IFA_ADDRESS`, no broadcast); the kernel adds the prefix route. `EEXIST` if the link
    /// has it already.
    pub(crate) fn add_address_v4(&mut self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let fail = |errno| NetlinkError { op: "add_address_v4", errno };
        if prefix_len > 32 {
            return Err(fail(Errno::EINVAL));
        }
        let mut msg = AddressMessage::default();
        msg.header.family = Family::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = ifindex;
        msg.attributes = vec![AddressAttribute::Local(IpAddr::V4(addr)), AddressAttribute::Address(IpAddr::V4(addr))];
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL).map_err(fail)?;
        Ok(())
    }

    /// Sets link `ifindex` up (`IFF_UP`; no other flag changes).
    pub(crate) fn set_up(&mut self, ifindex: u32) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = ifindex;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(link), 0).map_err(|errno| NetlinkError { op: "set_up", errno })?;
        Ok(())
    }

    /// Adds the IPv4 default route via `gateway` to the main table of the current
    /// namespace; the kernel picks the link that reaches `gateway` (`ENETUNREACH` if none
    /// does), `EEXIST` if there is a default route already.
    pub(crate) fn add_default_route_v4(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut route = RouteMessage::default();
        route.header.address_family = Family::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.request(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|errno| NetlinkError { op: "add_default_route_v4", errno })?;
        Ok(())
    }

    /// The ifindex of link `name` in the socket's namespace, `None` if there is none.
    pub(crate) fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let fail = |errno| NetlinkError { op: "link_index", errno };
        check_name(name).map_err(fail)?;
        self.index_of(name).map_err(fail)
    }

    /// Deletes link `name`; `Ok(false)` if there was none. Deleting either end of a veth
    /// deletes both, whichever namespace the other end is in. Synchronous: the ack comes
    /// once both are unregistered, after an RCU grace period (some 20 ms here), so keep it
    /// off a latency-bound thread. A sandbox's end also goes (and takes the host end) when
    /// its namespace dies; this is for what such a death did not clear.
    pub(crate) fn delete_link(&mut self, name: &str) -> Result<bool> {
        let fail = |errno| NetlinkError { op: "delete_link", errno };
        check_name(name).map_err(fail)?;
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        match self.request(RouteNetlinkMessage::DelLink(link), 0) {
            Ok(_) => Ok(true),
            Err(Errno::ENODEV) => Ok(false),
            Err(errno) => Err(fail(errno)),
        }
    }

    /// The names of the links of the socket's namespace that start with `prefix` (a dump).
    pub(crate) fn links_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>> {
        let fail = |errno| NetlinkError { op: "links_with_prefix", errno };
        for _ in 0..DUMP_ATTEMPTS {
            let replies =
                self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP).map_err(fail)?;
            if replies.interrupted {
                continue;
            }
            let names = replies.messages.into_iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => link_name(link),
                _ => None,
            });
            return Ok(names.filter(|n| n.starts_with(prefix)).collect());
        }
        Err(fail(Errno::EAGAIN))
    }

    /// `RTM_GETLINK` by name; the name is checked.
    fn index_of(&mut self, name: &str) -> std::result::Result<Option<u32>, Errno> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        let replies = match self.request(RouteNetlinkMessage::GetLink(link), 0) {
            Err(Errno::ENODEV) => return Ok(None),
            other => other?,
        };
        match replies.messages.as_slice() {
            [RouteNetlinkMessage::NewLink(link)] => Ok(Some(link.header.index)),
            _ => Err(Errno::EPROTO),
        }
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_ACK | flags` and collects the replies up to
    /// the ack, or for a dump up to `NLMSG_DONE` (a dump that started has no ack: see
    /// `netlink_rcv_skb`). An `NLMSG_ERROR` with a code, or a `NLMSG_DONE` with one (a dump
    /// that failed midway), is the error.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<Replies, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let kernel = NetlinkAddr::new(0, 0);
        let sent = retry_eintr(|| sendto(self.fd.as_raw_fd(), &bytes, &kernel, MsgFlags::empty()))?;
        if sent != bytes.len() {
            return Err(Errno::EMSGSIZE);
        }
        self.collect_replies()
    }

    /// Reads datagrams until the current request's ack or `NLMSG_DONE`.
    fn collect_replies(&mut self) -> std::result::Result<Replies, Errno> {
        let mut replies = Replies::default();
        loop {
            let len = self.receive()?;
            let mut rest = &self.buf[..len];
            while !rest.is_empty() {
                let frame = NetlinkBuffer::new_checked(rest).map_err(|_| Errno::EBADMSG)?;
                let frame_len = usize::try_from(frame.length()).map_err(|_| Errno::EBADMSG)?;
                let (seq, frame_flags) = (frame.sequence_number(), frame.flags());
                let message = &rest[..frame_len];
                rest = rest.get(frame_len.next_multiple_of(4)..).unwrap_or_default();
                // Replies to an earlier request that failed before reading them all.
                if seq != self.seq {
                    continue;
                }
                replies.interrupted |= frame_flags & NLM_F_DUMP_INTR != 0;
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(message).map_err(|_| Errno::EBADMSG)?;
                match parsed.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.messages.push(inner),
                    NetlinkPayload::Noop => {}
                    NetlinkPayload::Error(e) => return e.code.map_or(Ok(replies), |c| Err(kernel_errno(c.get()))),
                    NetlinkPayload::Done(d) if d.code == 0 => return Ok(replies),
                    NetlinkPayload::Done(d) => return Err(kernel_errno(d.code)),
                    NetlinkPayload::Overrun(_) => return Err(Errno::ENOBUFS),
                    _ => return Err(Errno::EPROTO),
                }
            }
        }
    }

    /// One datagram from the kernel into `buf`; its length.
    fn receive(&mut self) -> std::result::Result<usize, Errno> {
        let fd = self.fd.as_raw_fd();
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut self.buf)];
            let (len, flags, from) = match recvmsg::<NetlinkAddr>(fd, &mut iov, None, MsgFlags::empty()) {
                Ok(msg) => (msg.bytes, msg.flags, msg.address),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
            };
            if flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(Errno::EMSGSIZE);
            }
            // Only the kernel (port 0) answers requests; a process with CAP_NET_ADMIN in
            // this namespace could send to our port too.
            if from.is_some_and(|a| a.pid() == 0) {
                return Ok(len);
            }
        }
    }
}

/// Refuses what the kernel would (`dev_valid_name` in net/core/dev.c: 1 to 15 bytes, no
/// `/`, `:`, whitespace, `.` or `..`) and a NUL, before anything is sent.
fn check_name(name: &str) -> std::result::Result<(), Errno> {
    let bad_char = |c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace();
    let ok = (1..=IFNAME_MAX_BYTES).contains(&name.len()) && !name.contains(bad_char) && name != "." && name != "..";
    if ok { Ok(()) } else { Err(Errno::EINVAL) }
}

/// A link's `IFLA_IFNAME`.
fn link_name(link: LinkMessage) -> Option<String> {
    link.attributes.into_iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name),
        _ => None,
    })
}

/// The kernel's negative errno in `NLMSG_ERROR`/`NLMSG_DONE`.
fn kernel_errno(code: i32) -> Errno {
    Errno::from_raw(code.saturating_neg())
}

fn retry_eintr<T>(mut f: impl FnMut() -> std::result::Result<T, Errno>) -> std::result::Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;

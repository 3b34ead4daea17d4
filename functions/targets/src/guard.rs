//! The SSRF guard for webhooks: which addresses a webhook may reach. Loopback, link-local
//! (the cloud metadata address 169.254.169.254 among them), private, shared and other
//! non-public ranges are refused unless the server allows private targets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public address, or `None` when it is one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_link_local() => "link-local",
        _ if ip.is_private() => "private",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_broadcast() || ip.is_multicast() => "broadcast or multicast",
        _ if a >= 240 => "reserved",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "IETF protocol assignments",
        _ if a == 198 && (18..20).contains(&b) => "benchmarking",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xfe00 == 0xfc00 => "private (unique local)",
        _ if ip.is_multicast() => "multicast",
        // IPv4-compatible, NAT64 and 6to4 forms can carry any IPv4 address.
        _ if ip.segments()[..6] == [0; 6] => "IPv4-compatible",
        _ if first == 0x64 && ip.segments()[1] == 0xff9b => "NAT64",
        _ if first == 0x2002 => "6to4",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused_and_public_ones_pass() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::",
        ] {
            let ip: IpAddr = refused.parse().expect("ip");
            assert!(forbidden(ip).is_some(), "{refused} passed");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            let ip: IpAddr = public.parse().expect("ip");
            assert_eq!(forbidden(ip), None, "{public} refused");
        }
    }
}

//! The workload's resolver files as glibc reads them: `resolv.conf` (`nameserver`, `search`,
//! `domain`, `options ndots: timeout: attempts:`; anything else is ignored) and the hosts file
//! (`ADDRESS NAME ALIAS…`). The VMM copies the files it was given and nothing else; everything
//! here is read with limits, so a file of any content gives a bounded configuration.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

/// Bytes of each file that are read (the rest is ignored).
pub const MAX_FILE: usize = 32 * 1024;
/// glibc's `MAXNS`.
const MAX_NAMESERVERS: usize = 3;
/// glibc's `MAXDNSRCH`.
const MAX_SEARCH: usize = 6;

/// A resolver configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// At most three; `127.0.0.1` when the file names none (as glibc).
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    /// Dots a name needs to be tried as given first (default 1, at most 15).
    pub ndots: u8,
    /// Seconds to wait for a reply (default 5, at most 30).
    pub timeout_s: u8,
    /// Rounds over the name servers (default 2, at most 5).
    pub attempts: u8,
    /// Host file entries: a lower-case name (or alias) and its address.
    pub hosts: Vec<(String, IpAddr)>,
}

impl Config {
    /// Reads `resolv.conf` and the hosts file.
    pub fn parse(resolv_conf: &[u8], hosts: &[u8]) -> Config {
        let mut config = Config {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout_s: 5,
            attempts: 2,
            hosts: Vec::new(),
        };
        for line in lines(resolv_conf) {
            let mut words = line.split_ascii_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) if config.nameservers.len() < MAX_NAMESERVERS => {
                    // An IPv6 server may carry a zone (`fe80::1%eth0`): the zone is the host's.
                    let address = address.split('%').next().unwrap_or(address);
                    if let Ok(ip) = address.parse() {
                        config.nameservers.push(ip);
                    }
                }
                (Some("domain"), Some(domain)) => config.search = alloc::vec![lower(domain)],
                (Some("search"), Some(first)) => {
                    let domains = core::iter::once(first).chain(words);
                    config.search = domains.take(MAX_SEARCH).map(lower).collect();
                }
                (Some("options"), Some(first)) => {
                    for option in core::iter::once(first).chain(words) {
                        config.option(option);
                    }
                }
                _ => {}
            }
        }
        for domain in &mut config.search {
            if let Some(stripped) = domain.strip_suffix('.') {
                *domain = String::from(stripped);
            }
        }
        config.search.retain(|domain| !domain.is_empty());
        if config.nameservers.is_empty() {
            config.nameservers.push(IpAddr::from([127, 0, 0, 1]));
        }
        for line in lines(hosts) {
            let mut words = line.split_ascii_whitespace();
            let Some(Ok(address)) = words.next().map(str::parse::<IpAddr>) else { continue };
            config.hosts.extend(words.map(|name| (lower(name), address)));
        }
        config
    }

    fn option(&mut self, option: &str) {
        let Some((name, value)) = option.split_once(':') else { return };
        let Ok(value) = value.parse::<u64>() else { return };
        let capped = |limit: u8| u8::try_from(value).unwrap_or(limit).min(limit);
        match name {
            "ndots" => self.ndots = capped(15),
            "timeout" => self.timeout_s = capped(30).max(1),
            "attempts" => self.attempts = capped(5).max(1),
            _ => {}
        }
    }

    /// The hosts file's addresses for `name`, in file order (empty: not there).
    pub fn hosts_addresses(&self, name: &str) -> Vec<IpAddr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut found: Vec<IpAddr> = Vec::new();
        for (entry, address) in &self.hosts {
            if entry.eq_ignore_ascii_case(name) && !found.contains(address) {
                found.push(*address);
            }
        }
        found
    }
}

/// The lines of a file, without comments, within [`MAX_FILE`] bytes.
fn lines(file: &[u8]) -> impl Iterator<Item = &str> {
    let file = &file[..file.len().min(MAX_FILE)];
    file.split(|&b| b == b'\n').filter_map(|line| {
        let line = core::str::from_utf8(line).ok()?;
        let line = line.split(['#', ';']).next().unwrap_or("");
        (!line.trim().is_empty()).then_some(line)
    })
}

fn lower(word: &str) -> String {
    word.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_resolv_conf_reads_as_glibc_reads_it() {
        let resolv = b"# kubelet\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n\
            nameserver 10.96.0.10\nnameserver fe80::1%eth0\noptions ndots:5 timeout:2 attempts:3 rotate\n";
        let config = Config::parse(resolv, b"");
        assert_eq!(config.nameservers, [IpAddr::from([10, 96, 0, 10]), "fe80::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(config.search, ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!((config.ndots, config.timeout_s, config.attempts), (5, 2, 3));
    }

    #[test]
    fn defaults_and_limits_hold_for_any_file() {
        let config = Config::parse(b"options ndots:99 timeout:0 attempts:100000000000\nnameserver bogus\n", b"");
        assert_eq!(config.nameservers, [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!((config.ndots, config.timeout_s, config.attempts), (15, 1, 5));
        let many = "nameserver 1.1.1.1\n".repeat(10) + "search a b c d e f g h i j\n";
        let config = Config::parse(many.as_bytes(), b"");
        assert_eq!((config.nameservers.len(), config.search.len()), (3, 6));
        let config = Config::parse(b"search a.\ndomain Example.COM.\n", &[0xff; 100]);
        assert_eq!(config.search, ["example.com"]);
        assert!(config.hosts.is_empty());
    }

    #[test]
    fn the_hosts_file_answers_names_and_aliases_in_file_order() {
        let hosts = b"127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.1.2.3 Web.Local web # pod\nnot-an-ip x\n";
        let config = Config::parse(b"", hosts);
        let v = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(config.hosts_addresses("LOCALHOST"), [v("127.0.0.1"), v("::1")]);
        assert_eq!(config.hosts_addresses("web."), [v("10.1.2.3")]);
        assert!(config.hosts_addresses("x").is_empty());
    }
}

//! The servers a client sends to, and which one gets the next attempt.
//!
//! Without DNS spreading the targets are the endpoints as given, and a name
//! is resolved by the HTTP stack at each connection (to one address). With
//! it ([`RewardClientBuilder::dns_refresh`](crate::RewardClientBuilder::dns_refresh)),
//! every endpoint whose host is a name, such as a Kubernetes headless
//! Service (`reward.ns.svc.cluster.local`, one A record per ready pod), is
//! resolved to all its addresses, each a target of its own, and resolved
//! again every refresh period, so pods that come are used and pods that go
//! are dropped. A target that fails rests for its backoff
//! ([`EndpointState`]); a name that does not resolve keeps its last
//! addresses (or, never resolved, stays a target by name, whose connection
//! error then says what is wrong).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::retry::EndpointState;

/// Resolves a host name to its addresses; replaces the system resolver
/// (for tests, or a service registry) through
/// [`RewardClientBuilder::resolver`](crate::RewardClientBuilder::resolver).
pub type Resolver = Arc<dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync>;

/// One server to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Its base URL, for messages: the endpoint as given, with the address
    /// in parentheses when it came from DNS.
    pub(crate) name: String,
    /// Its base URL as requested (the address in place of the name).
    pub(crate) base: String,
}

/// An endpoint as configured.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    url: Url,
    /// The host, when it is a name to resolve.
    name: Option<String>,
    port: u16,
}

/// The targets and their rotation.
pub(crate) struct Fleet {
    endpoints: Vec<Endpoint>,
    refresh: Option<Duration>,
    resolver: Option<Resolver>,
    current: Mutex<Current>,
    /// One resolution at a time.
    resolving: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("endpoints", &self.endpoints)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

struct Current {
    targets: Arc<Vec<Target>>,
    state: EndpointState,
    /// When the names were last resolved; `None` before the first time.
    resolved: Option<Instant>,
    /// Each name's last addresses, kept when a later resolution fails.
    known: HashMap<String, Vec<IpAddr>>,
}

impl Fleet {
    /// The fleet of `bases` (normalized `http://` base URLs). With
    /// `refresh`, names are resolved (by `resolver`, else the system's) and
    /// spread over.
    pub(crate) fn new(bases: &[String], refresh: Option<Duration>, resolver: Option<Resolver>) -> Fleet {
        let endpoints: Vec<Endpoint> = bases
            .iter()
            .map(|base| {
                let url = Url::parse(base).expect("normalized endpoints parse");
                let host = url.host_str().unwrap_or_default();
                let is_ip = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok();
                let name = (refresh.is_some() && !is_ip).then(|| host.to_string());
                let port = url.port_or_known_default().unwrap_or(80);
                Endpoint {
                    base: base.clone(),
                    url,
                    name,
                    port,
                }
            })
            .collect();
        let targets: Vec<Target> = endpoints
            .iter()
            .map(|e| Target {
                name: e.base.clone(),
                base: e.base.clone(),
            })
            .collect();
        Fleet {
            current: Mutex::new(Current {
                state: EndpointState::new(targets.len()),
                targets: Arc::new(targets),
                resolved: None,
                known: HashMap::new(),
            }),
            endpoints,
            refresh,
            resolver,
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The targets now.
    pub(crate) fn targets(&self) -> Arc<Vec<Target>> {
        Arc::clone(&self.lock().targets)
    }

    /// Resolves the names again when the refresh period has passed (or they
    /// never were).
    pub(crate) async fn refresh_if_due(&self) {
        let Some(period) = self.refresh else { return };
        let due = |current: &Current| current.resolved.is_none_or(|at| at.elapsed() >= period);
        if !due(&self.lock()) {
            return;
        }
        let _one_at_a_time = self.resolving.lock().await;
        if !due(&self.lock()) {
            return;
        }
        let mut resolved: Vec<(usize, io::Result<Vec<IpAddr>>)> = Vec::new();
        for (k, endpoint) in self.endpoints.iter().enumerate() {
            if let Some(name) = &endpoint.name {
                resolved.push((k, self.resolve(name, endpoint.port).await));
            }
        }
        let mut current = self.lock();
        let mut targets = Vec::new();
        for (k, endpoint) in self.endpoints.iter().enumerate() {
            let Some(name) = &endpoint.name else {
                targets.push(Target {
                    name: endpoint.base.clone(),
                    base: endpoint.base.clone(),
                });
                continue;
            };
            let found = resolved.iter_mut().find(|(j, _)| *j == k).map(|(_, r)| r);
            let addresses = match found {
                Some(Ok(addresses)) if !addresses.is_empty() => {
                    let mut addresses = std::mem::take(addresses);
                    addresses.sort();
                    addresses.dedup();
                    current.known.insert(name.clone(), addresses.clone());
                    addresses
                }
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "no address".into(),
                    };
                    let kept = current.known.get(name).cloned().unwrap_or_default();
                    tracing_free_warn(&format!(
                        "reward-client: cannot resolve {name} ({why}); keeping {} known address(es)",
                        kept.len()
                    ));
                    kept
                }
            };
            if addresses.is_empty() {
                targets.push(Target {
                    name: endpoint.base.clone(),
                    base: endpoint.base.clone(),
                });
            }
            for ip in addresses {
                let mut url = endpoint.url.clone();
                // An `http` URL always takes an IP host.
                let _ = url.set_ip_host(ip);
                let base = url.as_str().trim_end_matches('/').to_string();
                targets.push(Target {
                    name: format!("{} ({ip})", endpoint.base),
                    base,
                });
            }
        }
        let old = Arc::clone(&current.targets);
        let rests: HashMap<&str, Option<Instant>> = old
            .iter()
            .enumerate()
            .map(|(i, t)| (t.base.as_str(), current.state.not_before(i)))
            .collect();
        let mut state = EndpointState::new(targets.len());
        for (i, target) in targets.iter().enumerate() {
            if let Some(Some(until)) = rests.get(target.base.as_str()) {
                state.failed(i, *until);
            }
        }
        current.state = state;
        current.targets = Arc::new(targets);
        current.resolved = Some(Instant::now());
    }

    async fn resolve(&self, name: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        match &self.resolver {
            Some(resolve) => resolve(name),
            None => Ok(tokio::net::lookup_host((name, port))
                .await?
                .map(|addr| addr.ip())
                .collect()),
        }
    }

    /// The target for the next attempt, and how long to wait before using
    /// it (see [`EndpointState::pick`]).
    pub(crate) fn pick(&self, now: Instant) -> (Target, Duration) {
        let mut current = self.lock();
        let (i, wait) = current.state.pick(now);
        (current.targets[i].clone(), wait)
    }

    /// `target` failed: it rests until `until`.
    pub(crate) fn failed(&self, target: &Target, until: Instant) {
        let mut current = self.lock();
        if let Some(i) = current.targets.iter().position(|t| t == target) {
            current.state.failed(i, until);
        }
    }

    /// `target` answered: back in rotation.
    pub(crate) fn succeeded(&self, target: &Target) {
        let mut current = self.lock();
        if let Some(i) = current.targets.iter().position(|t| t == target) {
            current.state.succeeded(i);
        }
    }
}

/// A warning on stderr (this crate has no logging dependency).
fn tracing_free_warn(message: &str) {
    eprintln!("{message}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[tokio::test]
    async fn names_spread_over_their_addresses_and_follow_changes() {
        let table = Arc::new(Mutex::new(vec![ip(3), ip(2)]));
        let resolver: Resolver = {
            let table = Arc::clone(&table);
            Arc::new(move |name: &str| {
                assert_eq!(name, "reward.test");
                let now = table.lock().unwrap().clone();
                if now.is_empty() {
                    Err(io::Error::other("NXDOMAIN"))
                } else {
                    Ok(now)
                }
            })
        };
        let fleet = Fleet::new(
            &["http://reward.test:8080".into(), "http://127.0.0.9:1".into()],
            Some(Duration::ZERO),
            Some(resolver),
        );
        fleet.refresh_if_due().await;
        let bases: Vec<String> = fleet.targets().iter().map(|t| t.base.clone()).collect();
        assert_eq!(
            bases,
            [
                "http://127.0.0.2:8080",
                "http://127.0.0.3:8080",
                "http://127.0.0.9:1"
            ]
        );
        assert_eq!(fleet.targets()[0].name, "http://reward.test:8080 (127.0.0.2)");

        // A failed target keeps resting across a refresh; a gone one is dropped.
        let now = Instant::now();
        let second = fleet.targets()[1].clone();
        fleet.failed(&second, now + Duration::from_secs(60));
        table.lock().unwrap().push(ip(4));
        fleet.refresh_if_due().await;
        let picks: Vec<String> = (0..4).map(|_| fleet.pick(now).0.base).collect();
        assert!(!picks.contains(&second.base), "{picks:?}");
        assert!(picks.contains(&"http://127.0.0.4:8080".to_string()), "{picks:?}");

        // A failed resolution keeps the last addresses.
        table.lock().unwrap().clear();
        fleet.refresh_if_due().await;
        assert_eq!(fleet.targets().len(), 4);
    }

    #[tokio::test]
    async fn without_dns_refresh_the_endpoints_are_the_targets() {
        let fleet = Fleet::new(&["http://reward.test:8080".into()], None, None);
        fleet.refresh_if_due().await;
        assert_eq!(fleet.targets()[0].base, "http://reward.test:8080");
    }
}

//! A fleet behind one name (issue 20): three real servers on 127.0.0.2-4,
//! one port, and the Rust client's DNS spreading with a resolver that reads
//! a table the test changes, as a headless Service's records change when
//! pods come and go.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reward_client::{Item, RewardClient};

use crate::http::{get, Server};

fn requests(addr: SocketAddr) -> u64 {
    let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("reward_requests_total{path=\"/v1/reward\",status=\"200\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn items(n: usize) -> Vec<Item> {
    (0..n).map(|k| Item::math("\\boxed{1}", "1").id(k)).collect()
}

#[test]
fn the_client_spreads_over_every_address_of_a_name_and_follows_it() {
    let first = Server::start_with(&["serve", "--listen", "127.0.0.2:0"], &[], "warn");
    let port = first.addr.port().to_string();
    let mut servers = vec![first];
    for host in ["127.0.0.3", "127.0.0.4"] {
        let listen = format!("{host}:{port}");
        servers.push(Server::start_with(&["serve", "--listen", &listen], &[], "warn"));
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let table = Arc::new(Mutex::new(vec![ip("127.0.0.2"), ip("127.0.0.3")]));
    let resolved = Arc::clone(&table);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = RewardClient::builder()
        .endpoint(format!("http://reward.fleet.test:{port}"))
        .dns_refresh(Duration::from_millis(200))
        .resolver(move |name| {
            assert_eq!(name, "reward.fleet.test");
            Ok(resolved.lock().unwrap().clone())
        })
        .batch_size(1)
        .max_in_flight(1)
        .backoff_base(Duration::from_millis(10))
        .backoff_cap(Duration::from_secs(30))
        .build()
        .unwrap();
    runtime.block_on(async {
        let results = client.reward(&items(10)).await.unwrap();
        assert!(results.iter().all(|r| r.reward == 1.0));
    });
    assert_eq!(
        (requests(addrs[0]), requests(addrs[1]), requests(addrs[2])),
        (5, 5, 0)
    );

    // A pod joins the name and one dies without leaving it yet: the dead
    // one is tried once, then rests, and the new one gets requests.
    table.lock().unwrap().push(ip("127.0.0.4"));
    drop(servers.remove(1));
    std::thread::sleep(Duration::from_millis(300));
    runtime.block_on(async {
        let results = client.reward(&items(12)).await.unwrap();
        assert!(results.iter().all(|r| r.reward == 1.0));
    });
    let (a, c) = (requests(addrs[0]), requests(addrs[2]));
    assert_eq!(a + c, 5 + 12, "every batch answered by a live server");
    assert!(c >= 5, "the new address got its share: {c}");
    runtime.block_on(async { client.health().await }).unwrap_err();
}

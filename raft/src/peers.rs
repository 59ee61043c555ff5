//! [`Peers`]: the one gRPC channel per peer node that every group's Raft traffic (and the
//! node's admin calls to that peer) share.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use islab_proto::raft::v1::transport_client::TransportClient;
use islab_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

/// Channels to peer nodes, shared by every group on this node.
#[derive(Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    max_message: usize,
    /// Advertised address → where to dial it (`NodeConfig::peer_address_map`).
    address_map: Arc<BTreeMap<String, String>>,
}

impl Peers {
    pub fn new(max_message: usize, address_map: BTreeMap<String, String>) -> Peers {
        Peers {
            channels: Arc::default(),
            max_message,
            address_map: Arc::new(address_map),
        }
    }

    /// Where to dial the node the cluster knows as `addr`.
    pub fn dial_addr<'a>(&'a self, addr: &'a str) -> &'a str {
        self.address_map.get(addr).map_or(addr, String::as_str)
    }

    /// A Raft transport client for the node at `addr` (`host:port`), on its shared channel.
    pub fn client(&self, addr: &str) -> Result<TransportClient<Channel>, String> {
        Ok(TransportClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message))
    }

    /// An Admin client for the node at `addr`, on the same shared channel.
    pub fn admin(&self, addr: &str) -> Result<AdminClient<Channel>, String> {
        Ok(AdminClient::new(self.channel(addr)?).max_decoding_message_size(self.max_message))
    }

    /// The one HTTP/2 channel to the node at `addr`, made on first use.
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        Ok({
            let mut channels = self.channels.lock().unwrap();
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let dial = self.dial_addr(addr);
                    let c = Endpoint::from_shared(format!("http://{dial}"))
                        .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .connect_lazy();
                    channels.insert(addr.to_string(), c.clone());
                    c
                }
            }
        })
    }
}

//! A KV client that hands back etcd's protobuf messages untouched.
//!
//! etcd-client's friendly wrappers hide fields and fill in defaults; a test
//! that compares two servers field by field must see exactly what each one
//! sent, and the exact gRPC status of an error. This client therefore calls
//! the `etcdserverpb.KV` methods directly with etcd's own message types.

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbTxnRequest, PbTxnResponse,
};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use tonic_prost::ProstCodec;

/// A connection to one member's KV service.
#[derive(Clone, Debug)]
pub struct RawKv {
    grpc: Grpc<Channel>,
}

impl RawKv {
    /// Connects to `url` (`http://host:port`).
    pub async fn connect(url: &str) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_string())?.connect().await?;
        Ok(RawKv { grpc: Grpc::new(channel) })
    }

    /// `KV/Range`.
    pub async fn range(&mut self, request: PbRangeRequest) -> Result<PbRangeResponse, Status> {
        self.call("/etcdserverpb.KV/Range", request).await
    }

    /// `KV/Put`.
    pub async fn put(&mut self, request: PbPutRequest) -> Result<PbPutResponse, Status> {
        self.call("/etcdserverpb.KV/Put", request).await
    }

    /// `KV/DeleteRange`.
    pub async fn delete_range(&mut self, request: PbDeleteRequest) -> Result<PbDeleteResponse, Status> {
        self.call("/etcdserverpb.KV/DeleteRange", request).await
    }

    /// `KV/Txn`.
    pub async fn txn(&mut self, request: PbTxnRequest) -> Result<PbTxnResponse, Status> {
        self.call("/etcdserverpb.KV/Txn", request).await
    }

    /// `KV/Compact`.
    pub async fn compact(&mut self, request: PbCompactionRequest) -> Result<PbCompactionResponse, Status> {
        self.call("/etcdserverpb.KV/Compact", request).await
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
        let response = self
            .grpc
            .unary(tonic::Request::new(request), PathAndQuery::from_static(path), ProstCodec::<Req, Resp>::default())
            .await?;
        Ok(response.into_inner())
    }
}

/// etcd's `GetPrefixRangeEnd`: the first key after every key with `prefix`
/// as prefix; `"\0"` (to the end) when there is none. What a range or
/// permission "with prefix" sends as its `range_end`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"foo"), b"fop");
        assert_eq!(prefix_end(b"p/"), b"p0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}

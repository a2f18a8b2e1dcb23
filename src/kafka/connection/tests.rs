//! Version negotiation against a scripted broker on 127.0.0.1: what the client sends is checked, and the answers
//! are encoded with kafka-protocol's broker half (a dev-dependency).

use bytes::BufMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, TopicName};
use tokio::net::TcpListener;

use super::*;

/// One request as the broker saw it: API key, version, and the frame after the length.
async fn read_request(stream: &mut TcpStream) -> (i16, i16, Bytes) {
    let len = stream.read_i32().await.expect("request length");
    let mut frame = vec![0; usize::try_from(len).expect("length")];
    stream.read_exact(&mut frame).await.expect("request");
    let api = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    (api, version, Bytes::from(frame))
}

/// Writes `response` with a header echoing `request`'s correlation id.
async fn answer<R: Encodable>(
    stream: &mut TcpStream,
    request: &Bytes,
    header_version: i16,
    response: &R,
    version: i16,
) {
    let correlation = i32::from_be_bytes([request[4], request[5], request[6], request[7]]);
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut body, header_version)
        .expect("header");
    response.encode(&mut body, version).expect("body");
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(body.len()).expect("length"));
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.expect("answer");
}

/// A broker on 127.0.0.1 that plays `script` with its first connection; its address and its task.
async fn scripted<F: Future<Output = ()> + Send + 'static>(
    script: impl FnOnce(TcpStream) -> F + Send + 'static,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        script(stream).await;
    });
    (address, task)
}

fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(key as i16)
        .with_min_version(min)
        .with_max_version(max)
}

#[test]
fn a_scram_server_error_is_read_as_a_short_token_only() {
    assert_eq!(scram_server_error(b"e=invalid-proof"), Some("invalid-proof".to_owned()));
    assert_eq!(
        scram_server_error(b"e=unknown-user,x=ext"),
        Some("unknown-user".to_owned())
    );
    assert_eq!(scram_server_error(b"e=\x1b[31mred"), Some("?".to_owned()));
    assert_eq!(
        scram_server_error(&[b"e=".as_slice(), &[b'a'; 65]].concat()),
        Some("?".to_owned())
    );
    assert_eq!(scram_server_error(b"e="), Some("?".to_owned()));
    assert_eq!(
        scram_server_error(b"v=c2lnbmF0dXJl"),
        None,
        "a server signature is no error"
    );
}

#[test]
fn the_highest_common_version_is_picked() {
    assert_eq!(pick(2..=10, Some((0, 20))), Some(10));
    assert_eq!(pick(2..=10, Some((0, 5))), Some(5));
    assert_eq!(pick(0..=4, Some((3, 9))), Some(4));
    assert_eq!(
        pick(2..=10, Some((0, 1))),
        None,
        "the broker offers only lower versions"
    );
    assert_eq!(
        pick(2..=10, Some((11, 12))),
        None,
        "the broker offers only higher versions"
    );
    assert_eq!(pick(2..=10, None), None, "the broker does not list the API");
}

#[tokio::test]
async fn an_old_broker_gets_apiversions_again_in_its_version_and_requests_in_its_range() {
    let (address, broker) = scripted(|mut stream| async move {
        // The first ApiVersions goes out in the newest version kafka-protocol speaks; this broker speaks 0-2 and
        // says so in a version 0 answer (KIP-511).
        let (key, version, request) = read_request(&mut stream).await;
        assert_eq!(
            (key, version),
            (
                ApiKey::ApiVersions as i16,
                *<ApiVersionsRequest as Request>::VERSIONS.end()
            )
        );
        let unsupported = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(vec![api(ApiKey::ApiVersions, 0, 2)]);
        answer(&mut stream, &request, 0, &unsupported, 0).await;
        let (key, version, request) = read_request(&mut stream).await;
        assert_eq!((key, version), (ApiKey::ApiVersions as i16, 2));
        let offered = ApiVersionsResponse::default().with_api_keys(vec![
            api(ApiKey::ApiVersions, 0, 2),
            api(ApiKey::ListOffsets, 0, 3),
            api(ApiKey::Metadata, 0, 5),
        ]);
        answer(&mut stream, &request, 0, &offered, 2).await;
        // The ListOffsets request comes in version 3, the highest both speak.
        let (key, version, request) = read_request(&mut stream).await;
        assert_eq!((key, version), (ApiKey::ListOffsets as i16, 3));
        let offsets = ListOffsetsResponse::default().with_topics(vec![
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![ListOffsetsPartitionResponse::default().with_offset(42)]),
        ]);
        answer(
            &mut stream,
            &request,
            ListOffsetsResponse::header_version(3),
            &offsets,
            3,
        )
        .await;
    })
    .await;
    let limit = Duration::from_secs(5);
    let mut connection = Connection::connect(&address, &Security::default(), limit)
        .await
        .expect("connect and negotiate");
    assert_eq!(connection.version(ApiKey::Metadata, 1..=13).ok(), Some(5));
    let unlisted = connection.version(ApiKey::OffsetFetch, 1..=9);
    assert!(
        matches!(&unlisted, Err(WireError::Unsupported { theirs, .. }) if theirs == "none"),
        "{unlisted:?}"
    );
    let too_old = connection.version(ApiKey::ListOffsets, 4..=10);
    assert!(matches!(too_old, Err(WireError::Unsupported { .. })), "{too_old:?}");
    assert_eq!(connection.version(ApiKey::ListOffsets, 2..=10).ok(), Some(3));
    let response = connection
        .call(&ListOffsetsRequest::default(), limit)
        .await
        .expect("list offsets");
    assert_eq!(response.topics[0].partitions[0].offset, 42);
    broker.await.expect("the broker saw what it expected");
}

/// A broker that answers ApiVersions (in version 0, Metadata 0-12 offered), then `answered` Metadata requests, then
/// hangs up at the next.
async fn hangs_up_after(answered: usize) -> (String, tokio::task::JoinHandle<()>) {
    scripted(move |mut stream| async move {
        let (_, _, request) = read_request(&mut stream).await;
        let unsupported = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(vec![api(ApiKey::ApiVersions, 0, 0)]);
        answer(&mut stream, &request, 0, &unsupported, 0).await;
        let (_, _, request) = read_request(&mut stream).await;
        let offered = ApiVersionsResponse::default()
            .with_api_keys(vec![api(ApiKey::ApiVersions, 0, 0), api(ApiKey::Metadata, 0, 12)]);
        answer(&mut stream, &request, 0, &offered, 0).await;
        for _ in 0..answered {
            let (_, version, request) = read_request(&mut stream).await;
            let metadata = kafka_protocol::messages::MetadataResponse::default();
            answer(
                &mut stream,
                &request,
                kafka_protocol::messages::MetadataResponse::header_version(version),
                &metadata,
                version,
            )
            .await;
        }
        let _ = read_request(&mut stream).await;
    })
    .await
}

#[tokio::test]
async fn a_connection_without_a_login_closed_at_its_first_request_names_authentication() {
    let limit = Duration::from_secs(5);
    let (address, broker) = hangs_up_after(0).await;
    let mut connection = Connection::connect(&address, &Security::default(), limit)
        .await
        .expect("ApiVersions is answered");
    let error = connection
        .call(&MetadataRequest::default(), limit)
        .await
        .expect_err("hung up");
    assert!(
        matches!(
            &error,
            WireError::ClosedUnauthenticated {
                api: ApiKey::Metadata,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("kafka.sasl is not set") && text.contains("authentication"),
        "{text}"
    );
    broker.await.expect("broker");

    // Once a request was answered, a later hang-up is only what it is.
    let (address, broker) = hangs_up_after(1).await;
    let mut connection = Connection::connect(&address, &Security::default(), limit)
        .await
        .expect("connect");
    connection
        .call(&MetadataRequest::default(), limit)
        .await
        .expect("answered");
    let error = connection
        .call(&MetadataRequest::default(), limit)
        .await
        .expect_err("hung up");
    assert!(matches!(&error, WireError::Io { .. }), "{error:?}");
    broker.await.expect("broker");
}

#[tokio::test]
async fn a_broker_that_hangs_up_is_an_io_error_that_keeps_its_cause() {
    let (address, broker) = scripted(|mut stream| async move {
        let _ = read_request(&mut stream).await;
    })
    .await;
    let error = Connection::connect(&address, &Security::default(), Duration::from_secs(5))
        .await
        .expect_err("no answer");
    let WireError::Io { source, .. } = &error else {
        panic!("expected an I/O error, got {error:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(
        std::error::Error::source(&error).is_some(),
        "the cause is kept: {error}"
    );
    broker.await.expect("broker");
}

#[tokio::test]
async fn the_watermark_requests_get_their_compact_versions_or_the_brokers_highest_below() {
    use crate::kafka::requests::Request;
    // (ListOffsets offered, Metadata offered) -> (ListOffsets spoken, Metadata spoken).
    let cases = [
        ((0, 9), (0, 12), Some(3), Some(4)),
        ((0, 3), (0, 4), Some(3), Some(4)),
        ((0, 2), (0, 1), Some(2), Some(1)),
        ((1, 2), (4, 12), Some(2), Some(4)),
        ((4, 9), (5, 12), None, None),
    ];
    for (list_offsets, metadata, want_list_offsets, want_metadata) in cases {
        let (address, broker) = scripted(move |mut stream| async move {
            let (_, version, request) = read_request(&mut stream).await;
            let offered = ApiVersionsResponse::default().with_api_keys(vec![
                api(ApiKey::ApiVersions, 0, *<ApiVersionsRequest as Request>::VERSIONS.end()),
                api(ApiKey::ListOffsets, list_offsets.0, list_offsets.1),
                api(ApiKey::Metadata, metadata.0, metadata.1),
            ]);
            answer(&mut stream, &request, 0, &offered, version).await;
        })
        .await;
        let connection = Connection::connect(&address, &Security::default(), Duration::from_secs(5))
            .await
            .expect("connect and negotiate");
        let case = format!("ListOffsets {list_offsets:?}, Metadata {metadata:?}");
        assert_eq!(
            connection
                .version(ApiKey::ListOffsets, <ListOffsetsRequest as Request>::VERSIONS)
                .ok(),
            want_list_offsets,
            "{case}"
        );
        assert_eq!(
            connection
                .version(ApiKey::Metadata, <MetadataRequest as Request>::VERSIONS)
                .ok(),
            want_metadata,
            "{case}"
        );
        broker.await.expect("broker");
    }
}

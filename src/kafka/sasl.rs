//! SASL for both kinds of broker connection: rskafka's (record samples) and ours ([`crate::kafka::connection`]:
//! watermarks and lag). Both run the PLAIN and SCRAM-SHA-256/512 mechanisms of the `rsasl` crate, which rskafka
//! uses itself, so the credentials of `kafka.sasl` are turned into a mechanism in one place.

use std::io::Cursor;

use bytes::Bytes;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};

use crate::config::{SaslConfig, SaslMechanism};
use crate::kafka::connection::{Connection, ProtocolCause, WireError};

/// Every SASL request must be answered within this, whatever the caller's overall limit (which also bounds it).
const STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The mechanism's name on the wire.
pub fn mechanism_name(mechanism: SaslMechanism) -> &'static str {
    match mechanism {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
    }
}

/// Authenticates `connection` with `sasl`: SaslHandshake names the mechanism, then SaslAuthenticate carries its
/// messages until the mechanism is done (for SCRAM, after checking the server's signature).
pub(crate) async fn authenticate(connection: &mut Connection, sasl: &SaslConfig) -> Result<(), WireError> {
    let mechanism = mechanism_name(sasl.mechanism);
    let refused = |connection: &Connection, error: ResponseError, message: Option<String>| WireError::Authentication {
        address: connection.address().to_owned(),
        mechanism,
        error,
        message,
    };
    let failed = |connection: &Connection, source: ProtocolCause| WireError::Sasl {
        address: connection.address().to_owned(),
        mechanism,
        source,
    };
    let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let answer = connection.call(&request, STEP_LIMIT).await?;
    if let Some(error) = answer.error_code.err() {
        let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(
            connection,
            error,
            Some(format!("the broker offers {}", offered.join(", "))),
        ));
    }
    let config = SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password.expose().to_owned())
        .map_err(|e| failed(connection, e.into()))?;
    let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| failed(connection, e.into()))?;
    let mut session = SASLClient::new(config)
        .start_suggested(&[name])
        .map_err(|e| failed(connection, e.into()))?;
    let mut received: Option<Bytes> = None;
    loop {
        let mut message = Cursor::new(Vec::new());
        let state = session
            .step(received.as_deref(), &mut message)
            .map_err(|e| failed(connection, e.into()))?;
        if state.has_sent_message() {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message.into_inner()));
            let answer = connection.call(&request, STEP_LIMIT).await?;
            if let Some(error) = answer.error_code.err() {
                let message = answer.error_message.map(|m| m.to_string());
                return Err(refused(connection, error, message));
            }
            received = Some(answer.auth_bytes);
        }
        if state.is_finished() {
            return Ok(());
        }
    }
}

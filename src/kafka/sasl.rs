//! SASL credentials for both kinds of broker connection: rskafka's (record samples) and ours
//! ([`crate::kafka::connection`]: watermarks and lag, whose SaslHandshake/SaslAuthenticate exchange lives there
//! beside the other calls). Both run the PLAIN and SCRAM-SHA-256/512 mechanisms of the `rsasl` crate, which
//! rskafka uses itself, so the credentials of `kafka.sasl` are turned into a mechanism in one place. This file
//! imports nothing of the connection, so the two are no circle.

use crate::config::SaslMechanism;

/// The mechanism's name on the wire.
pub fn mechanism_name(mechanism: SaslMechanism) -> &'static str {
    match mechanism {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        // MSK IAM's token travels as a SASL OAUTHBEARER token, as the MSK IAM signer libraries send it.
        SaslMechanism::AwsMskIam => "OAUTHBEARER",
    }
}

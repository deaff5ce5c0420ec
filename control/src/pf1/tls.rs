//! TLS for punktfunk/1: self-signed identities, rustls configurations for QUIC, the data-plane
//! key export.
//!
//! Both sides present self-signed ECDSA P-256 certificates. The TLS layer accepts any
//! certificate on either side, but still verifies the handshake signature (so a peer proves it
//! holds the key of the certificate it shows); trust is decided above TLS, by the SHA-256
//! [`Fingerprint`] of the DER certificate: the client pins the host's on first use, the host
//! keeps a list of paired clients. The configurations read no clock (a fixed time provider:
//! certificate validity is never judged) and disable session resumption and 0-RTT, so every
//! connection runs a full handshake with both certificates.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use thiserror::Error;

/// ALPN protocol id of punktfunk/1.
pub const ALPN: &[u8] = b"punktfunk/1";

/// Bytes of data-plane key material exported per session: 16 bytes AES-128 key, then 4 bytes
/// nonce salt, then 12 bytes reserved.
pub const DATA_KEY_MATERIAL_LEN: usize = 32;

/// TLS exporter label (RFC 8446 §7.5) of the host → client data-plane keys. The context is
/// the session id as 8 bytes big-endian.
pub const DATA_KEY_LABEL: &[u8] = b"EXPORTER-punktfunk/1 data host->client";

/// Why an identity could not be loaded or made. Local state, not peer input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate PEM does not parse.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The key PEM does not parse or is of an unsupported type.
    #[error("private key: {0}")]
    Key(String),
    /// Key and certificate do not belong together.
    #[error("private key does not match the certificate")]
    Mismatch,
    /// Generating a key or certificate failed.
    #[error("generating an identity: {0}")]
    Generate(String),
}

/// SHA-256 of a DER certificate: how punktfunk/1 names a peer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        let mut fp = [0; 32];
        fp.copy_from_slice(d.as_ref());
        Self(fp)
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        crate::gamestream::query::hex_lower(&self.0)
    }

    /// Parses 64 hex digits (either case; `:` separators allowed).
    pub fn from_hex(s: &str) -> Option<Self> {
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return None;
        }
        let mut fp = [0; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            fp[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(fp))
    }

    /// The first 8 bytes as hex, for logs.
    pub fn short(&self) -> String {
        crate::gamestream::query::hex_lower(&self.0[..8])
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A certificate and its private key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprint: Fingerprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// Generates an ECDSA P-256 key and a self-signed certificate with common name `name`.
    /// Draws the key from the OS random generator (through ring): call it from the act layer,
    /// once, and persist the result ([`super::trust`]).
    pub fn generate(name: &str) -> Result<Self, IdentityError> {
        let gen_err = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        // Never judged by punktfunk/1; a fixed window needs no clock.
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Self::from_der(
            cert.der().to_vec(),
            PrivatePkcs8KeyDer::from(key.serialize_der()),
        )
    }

    fn from_der(cert: Vec<u8>, key: PrivatePkcs8KeyDer<'static>) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from(cert);
        let key_der = PrivateKeyDer::Pkcs8(key.clone_key());
        rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key_der, &provider()).map_err(
            |e| match e {
                rustls::Error::InconsistentKeys(_) => IdentityError::Mismatch,
                rustls::Error::InvalidCertificate(_) => IdentityError::Certificate(e.to_string()),
                e => IdentityError::Key(e.to_string()),
            },
        )?;
        Ok(Self {
            fingerprint: Fingerprint::of(&cert),
            cert,
            key,
        })
    }

    /// Loads an identity from PEM texts (`CERTIFICATE`, `PRIVATE KEY` PKCS#8), checking that
    /// they belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        Self::from_der(cert.to_vec(), key)
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        crate::gamestream::cert::pem_encode("CERTIFICATE", &self.cert)
    }

    /// The private key as PEM (PKCS#8). Secret.
    pub fn key_pem(&self) -> String {
        crate::gamestream::cert::pem_encode("PRIVATE KEY", self.key.secret_pkcs8_der())
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The DER certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }
}

/// Reads no clock: certificate validity is never judged, and resumption is off.
#[derive(Debug)]
struct FixedTime;

impl rustls::time_provider::TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_700_000_000,
        )))
    }
}

/// Accepts any peer certificate at the TLS layer (trust is the application's, by
/// fingerprint) and verifies TLS 1.3 handshake signatures with ring.
#[derive(Debug)]
struct AnyPeerCert {
    provider: Arc<CryptoProvider>,
}

impl AnyPeerCert {
    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// QUIC is TLS 1.3 only (RFC 9001 §4.2).
fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ClientCertVerifier for AnyPeerCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for AnyPeerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The host's rustls configuration: TLS 1.3, its certificate, a mandatory client
/// certificate (any), ALPN `punktfunk/1`, no session tickets. [`super::HostSession`] wraps it
/// for QUIC; it is public for tools and tests that speak QUIC to a host directly.
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let mut config =
        rustls::ServerConfig::builder_with_details(Arc::clone(&provider), Arc::new(FixedTime))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyPeerCert { provider }))
            .with_single_cert(
                vec![id.cert.clone()],
                PrivateKeyDer::Pkcs8(id.key.clone_key()),
            )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// The client's rustls configuration: TLS 1.3, its certificate, any host certificate (pinned
/// above TLS), ALPN `punktfunk/1`, no resumption. Public like [`server_config`].
pub fn client_config(id: &Identity) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let mut config =
        rustls::ClientConfig::builder_with_details(Arc::clone(&provider), Arc::new(FixedTime))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyPeerCert { provider }))
            .with_client_auth_cert(
                vec![id.cert.clone()],
                PrivateKeyDer::Pkcs8(id.key.clone_key()),
            )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

/// Exports the data-plane key material of generation `generation` of session `session_id`
/// from a QUIC connection's TLS session: [`DATA_KEY_LABEL`], context = `session_id` (8 bytes)
/// then `generation` (4 bytes), big-endian
/// ([`DataKey::exporter_context`](punktfunk_engine::pf1::DataKey::exporter_context)).
pub fn export_data_key(
    session: &dyn quinn_proto::crypto::Session,
    session_id: u64,
    generation: u32,
) -> Option<[u8; DATA_KEY_MATERIAL_LEN]> {
    let mut out = [0; DATA_KEY_MATERIAL_LEN];
    let context = punktfunk_engine::pf1::DataKey::exporter_context(session_id, generation);
    session
        .export_keying_material(&mut out, DATA_KEY_LABEL, &context)
        .ok()?;
    Some(out)
}

/// The pairing channel binding of a connection ([`super::pairing::CHANNEL_BINDING_LABEL`]).
pub(crate) fn channel_binding(session: &dyn quinn_proto::crypto::Session) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    session
        .export_keying_material(&mut out, super::pairing::CHANNEL_BINDING_LABEL, &[])
        .ok()?;
    Some(out)
}

/// The fingerprint of the certificate the peer presented, once the handshake has it.
pub(crate) fn peer_fingerprint(session: &dyn quinn_proto::crypto::Session) -> Option<Fingerprint> {
    let certs = session
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| Fingerprint::of(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_pem() {
        let id = Identity::generate("test").unwrap();
        let again = Identity::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), id.fingerprint());
        let other = Identity::generate("other").unwrap();
        assert!(matches!(
            Identity::from_pem(&id.cert_pem(), &other.key_pem()),
            Err(IdentityError::Mismatch)
        ));
        assert!(matches!(
            Identity::from_pem("junk", &id.key_pem()),
            Err(IdentityError::Certificate(_))
        ));
        server_config(&id).unwrap();
        client_config(&id).unwrap();
    }

    #[test]
    fn fingerprint_hex() {
        let fp = Fingerprint::of(b"x");
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()), Some(fp));
        assert_eq!(Fingerprint::from_hex(&fp.to_hex().to_uppercase()), Some(fp));
        assert_eq!(Fingerprint::from_hex("ab"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(64)), None);
        // SHA-256("x")
        assert_eq!(
            fp.to_hex(),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }
}

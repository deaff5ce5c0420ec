//! TLS for nvhttp's HTTPS listener: rustls with the ring provider, the host certificate, and
//! a client-certificate verifier that accepts any certificate.
//!
//! Moonlight clients present self-signed certificates, and embedded clients may have bad clocks, so
//! the TLS layer must not judge issuer or validity (docs/gamestream-protocol-notes.md
//! "nvhttp transport"; Sunshine's verify callback always returns 1). It still checks that the
//! client holds the certificate's private key (the handshake signature), using the key from our own
//! DER reader ([`Certificate`]), so certificates that webpki would refuse to parse still work.
//! Authorization happens per request, against the paired store, by fingerprint.
//!
//! A client certificate is requested but not required: a client without one completes the
//! handshake and gets `status_code="401"` for every request, which Moonlight reads as "not
//! paired".

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::gamestream::cert::{Certificate, SigAlg};
use crate::gamestream::identity::HostIdentity;

/// Accepts every client certificate at the TLS layer; checks handshake signatures.
#[derive(Debug, Default)]
pub struct AnyClientCert;

const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
];

fn sig_alg(scheme: SignatureScheme) -> Option<SigAlg> {
    Some(match scheme {
        SignatureScheme::RSA_PSS_SHA256 => SigAlg::RsaPssSha256,
        SignatureScheme::RSA_PSS_SHA384 => SigAlg::RsaPssSha384,
        SignatureScheme::RSA_PSS_SHA512 => SigAlg::RsaPssSha512,
        SignatureScheme::RSA_PKCS1_SHA256 => SigAlg::RsaPkcs1Sha256,
        SignatureScheme::RSA_PKCS1_SHA384 => SigAlg::RsaPkcs1Sha384,
        SignatureScheme::RSA_PKCS1_SHA512 => SigAlg::RsaPkcs1Sha512,
        SignatureScheme::ECDSA_NISTP256_SHA256 => SigAlg::EcdsaP256Sha256,
        SignatureScheme::ECDSA_NISTP384_SHA384 => SigAlg::EcdsaP384Sha384,
        SignatureScheme::ED25519 => SigAlg::Ed25519,
        _ => return None,
    })
}

fn verify(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let cert = Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let alg = sig_alg(dss.scheme).ok_or(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::NoSignatureSchemesInCommon,
    ))?;
    cert.verify(alg, message, dss.signature())
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// The HTTPS listener's TLS configuration: TLS 1.2 and 1.3, the host certificate, any client
/// certificate, no ALPN (HTTP/1.1 only).
pub fn server_config(host: &HostIdentity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyClientCert))
        .with_single_cert(
            vec![CertificateDer::from(host.certificate().der().to_vec())],
            host.key_der(),
        )?;
    Ok(Arc::new(config))
}

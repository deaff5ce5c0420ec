//! The host's identity: an RSA-2048 key and a self-signed certificate.
//!
//! The certificate is what the HTTPS server presents, what pairing phase 1 sends as `plaincert`,
//! and whose `signatureValue` goes into the phase-2 hash; Moonlight pins it exactly, so it must
//! never change once clients are paired (docs/gamestream-protocol-notes.md "nvhttp transport"). RSA
//! with a SHA-256 signature is required: the pairing signatures are RSA PKCS#1 v1.5 / SHA-256.
//!
//! [`HostIdentity::generate`] is deterministic in its seed (the caller draws the seed from
//! the OS once and persists the result). The certificate has CN `punktfunk`, a serial number
//! derived from the key, and a fixed validity of 2000-01-01 to 2099-12-31 (clients never check
//! it; a fixed window needs no clock). [`HostIdentity::sign`] uses ring, which draws RSA
//! blinding randomness from the OS; PKCS#1 v1.5 signatures do not depend on it.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use ring::signature::RsaKeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::cert::{CertError, Certificate, KeyKind, pem_encode};

/// Bits of the host's RSA key.
pub const HOST_KEY_BITS: usize = 2048;

/// Why a host identity could not be loaded or made. Local state, not peer input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate PEM does not parse.
    #[error("host certificate: {0}")]
    Certificate(#[from] CertError),
    /// The certificate's key is not RSA.
    #[error("host certificate key is not RSA; GameStream pairing needs RSA")]
    NotRsa,
    /// The private key PEM does not parse as an RSA key (PKCS#8 or PKCS#1).
    #[error("host private key: {0}")]
    Key(String),
    /// Key and certificate belong to different key pairs.
    #[error("host private key does not match the host certificate")]
    Mismatch,
    /// Generating a key or certificate failed.
    #[error("generating the host identity: {0}")]
    Generate(String),
}

/// PEM texts of a newly generated identity, ready to be persisted.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedIdentity {
    /// The certificate (`CERTIFICATE`).
    pub cert_pem: String,
    /// The private key (`PRIVATE KEY`, PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedIdentity").finish_non_exhaustive()
    }
}

/// A loaded host identity.
pub struct HostIdentity {
    cert: Certificate,
    cert_pem: String,
    key: RsaKeyPair,
    key_der: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl HostIdentity {
    /// Generates an RSA-2048 key from `seed` and a self-signed certificate for it. Slow in
    /// unoptimised builds of the big-integer crates (the workspace optimises them in dev).
    pub fn generate(seed: [u8; 32]) -> Result<GeneratedIdentity, IdentityError> {
        use rsa::pkcs8::EncodePrivateKey;
        let gen_err = |e: &dyn std::fmt::Display| IdentityError::Generate(e.to_string());
        let mut rng = ChaCha20Rng::from_seed(seed);
        let key = rsa::PrivateKey::new(&mut rng, HOST_KEY_BITS).map_err(|e| gen_err(&e))?;
        let pkcs8 = key.to_pkcs8_der().map_err(|e| gen_err(&e))?;
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| gen_err(&e))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "punktfunk");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert = params.self_signed(&signer).map_err(|e| gen_err(&e))?;
        Ok(GeneratedIdentity {
            cert_pem: pem_encode("CERTIFICATE", cert.der()),
            key_pem: pem_encode("PRIVATE KEY", pkcs8.secret_pkcs8_der()),
        })
    }

    /// Loads an identity from PEM texts, checking that key and certificate match.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let cert = Certificate::from_pem(cert_pem.as_bytes())?;
        if cert.key_kind() != KeyKind::Rsa {
            return Err(IdentityError::NotRsa);
        }
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let key = match &key_der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(IdentityError::Key("not an RSA key".into())),
        }
        .map_err(|e| IdentityError::Key(e.to_string()))?;
        if key.public().as_ref() != cert.public_key() {
            return Err(IdentityError::Mismatch);
        }
        Ok(Self {
            cert,
            cert_pem: cert_pem.to_owned(),
            key,
            key_der,
        })
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate's PEM text exactly as stored: pairing phase 1 sends its bytes as hex.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, for the TLS server.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    /// `Sign_serverkey(msg)`: RSA PKCS#1 v1.5 with SHA-256 (notes "Pairing").
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        // Cannot fail: the buffer is exactly the modulus length and the algorithm is fixed;
        // ring reports an error only for a wrong buffer length or a failing OS RNG.
        if self
            .key
            .sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .is_err()
        {
            tracing::error!("RSA signing failed; the client will reject the pairing");
        }
        sig
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const HOST_CERT_PEM: &str = include_str!("../../tests/fixtures/host-cert.pem");
    pub(crate) const HOST_KEY_PEM: &str = include_str!("../../tests/fixtures/host-key.pem");

    pub(crate) fn fixture() -> HostIdentity {
        HostIdentity::from_pem(HOST_CERT_PEM, HOST_KEY_PEM).unwrap()
    }

    #[test]
    fn loads_and_signs() {
        let id = fixture();
        let sig = id.sign(b"server secret");
        assert_eq!(sig.len(), 256);
        id.certificate()
            .verify_pairing_signature(b"server secret", &sig)
            .unwrap();
        assert!(
            id.certificate()
                .verify_pairing_signature(b"other", &sig)
                .is_err()
        );
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let other = include_str!("../../tests/fixtures/client-key.pem");
        assert!(matches!(
            HostIdentity::from_pem(HOST_CERT_PEM, other),
            Err(IdentityError::Mismatch)
        ));
        assert!(matches!(
            HostIdentity::from_pem(HOST_CERT_PEM, "junk"),
            Err(IdentityError::Key(_))
        ));
    }

    #[test]
    fn generates_a_loadable_identity() {
        let g = HostIdentity::generate([7; 32]).unwrap();
        let id = HostIdentity::from_pem(&g.cert_pem, &g.key_pem).unwrap();
        assert_eq!(id.certificate().signature().len(), 256);
        assert!(g.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        // Deterministic in the seed.
        assert_eq!(HostIdentity::generate([7; 32]).unwrap(), g);
    }
}

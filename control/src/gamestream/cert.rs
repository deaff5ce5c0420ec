//! The X.509 fields GameStream needs from a certificate, read from hostile DER.
//!
//! Pairing hashes the raw bytes of a certificate's `signatureValue`
//! (docs/gamestream-protocol-notes.md "Pairing", `sig(cert)`), and checks the client's RSA/SHA-256
//! signature with the certificate's public key; the HTTPS server checks TLS handshake signatures
//! with the same key and authorizes by the SHA-256 fingerprint of the DER. That is all this module
//! reads:
//!
//! ```text
//! Certificate ::= SEQUENCE {
//!   tbsCertificate SEQUENCE {
//!     [0] version OPTIONAL, serialNumber INTEGER, signature AlgorithmIdentifier,
//!     issuer Name, validity SEQUENCE, subject Name,
//!     subjectPublicKeyInfo SEQUENCE { algorithm SEQUENCE { OID, params }, key BIT STRING },
//!     ... (extensions ignored) }
//!   signatureAlgorithm AlgorithmIdentifier,
//!   signatureValue BIT STRING }            <- sig(cert): the bits, without the pad octet
//! ```
//!
//! Validity dates, issuer and extensions are deliberately ignored: Moonlight clients send
//! self-signed certificates and embedded ones may have bad clocks (notes "nvhttp transport"). A
//! small DER walker (definite lengths only, one-byte tags) stands in for a full X.509 crate: it
//! reads exactly the fields above and refuses everything it does not understand with a
//! [`CertError`] (see the `client_cert` fuzz target).

use ring::signature::{self, UnparsedPublicKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Largest certificate accepted (DER bytes).
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// Why a certificate or a signature was refused. All variants are hostile or malformed peer
/// input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No `-----BEGIN CERTIFICATE-----` block, or bad base64 in it.
    #[error("not a PEM certificate")]
    NotPem,
    /// Larger than [`MAX_CERT_LEN`].
    #[error("certificate is {0} bytes, more than {MAX_CERT_LEN}")]
    TooLarge(usize),
    /// The DER structure is not an X.509 certificate this module can read.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// The public key is of a kind not supported (RSA, ECDSA P-256/P-384 and Ed25519 are).
    #[error("unsupported public key algorithm")]
    UnsupportedKey,
    /// The key cannot make signatures of the requested algorithm.
    #[error("signature algorithm does not match the certificate's key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// The kind of public key in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA (`rsaEncryption`); what every Moonlight client uses (RSA-2048).
    Rsa,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

/// A signature algorithm, as a TLS handshake or pairing uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigAlg {
    /// RSA PKCS#1 v1.5 with SHA-256: the pairing signature (notes "Pairing").
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSA-PSS with SHA-256 (TLS 1.3).
    RsaPssSha256,
    /// RSA-PSS with SHA-384.
    RsaPssSha384,
    /// RSA-PSS with SHA-512.
    RsaPssSha512,
    /// ECDSA P-256 with SHA-256, ASN.1 signature.
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, ASN.1 signature.
    EcdsaP384Sha384,
    /// Ed25519.
    Ed25519,
}

impl SigAlg {
    fn ring(self) -> (KeyKind, &'static dyn signature::VerificationAlgorithm) {
        match self {
            SigAlg::RsaPkcs1Sha256 => (KeyKind::Rsa, &signature::RSA_PKCS1_2048_8192_SHA256),
            SigAlg::RsaPkcs1Sha384 => (KeyKind::Rsa, &signature::RSA_PKCS1_2048_8192_SHA384),
            SigAlg::RsaPkcs1Sha512 => (KeyKind::Rsa, &signature::RSA_PKCS1_2048_8192_SHA512),
            SigAlg::RsaPssSha256 => (KeyKind::Rsa, &signature::RSA_PSS_2048_8192_SHA256),
            SigAlg::RsaPssSha384 => (KeyKind::Rsa, &signature::RSA_PSS_2048_8192_SHA384),
            SigAlg::RsaPssSha512 => (KeyKind::Rsa, &signature::RSA_PSS_2048_8192_SHA512),
            SigAlg::EcdsaP256Sha256 => (KeyKind::EcdsaP256, &signature::ECDSA_P256_SHA256_ASN1),
            SigAlg::EcdsaP384Sha384 => (KeyKind::EcdsaP384, &signature::ECDSA_P384_SHA384_ASN1),
            SigAlg::Ed25519 => (KeyKind::Ed25519, &signature::ED25519),
        }
    }
}

/// A parsed certificate: its DER, `sig(cert)`, public key and fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    signature: Vec<u8>,
    key_kind: KeyKind,
    key: Vec<u8>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &super::query::hex_lower(&self.fingerprint))
            .field("key_kind", &self.key_kind)
            .finish_non_exhaustive()
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_VERSION: u8 = 0xa0;

/// A cursor over DER TLVs.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one TLV; returns (tag, contents).
    fn next(&mut self) -> Result<(u8, &'a [u8]), CertError> {
        let m = CertError::Malformed;
        let (&tag, rest) = self.rest.split_first().ok_or(m("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(m("multi-byte tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(m("truncated length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(m("indefinite or huge length"));
            }
            if rest.len() < n {
                return Err(m("truncated length"));
            }
            let (bytes, tail) = rest.split_at(n);
            rest = tail;
            bytes
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b))
        };
        if rest.len() < len {
            return Err(m("length past end"));
        }
        let (contents, tail) = rest.split_at(len);
        self.rest = tail;
        Ok((tag, contents))
    }

    fn read_tagged(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], CertError> {
        match self.next()? {
            (t, c) if t == tag => Ok(c),
            _ => Err(CertError::Malformed(what)),
        }
    }
}

/// The contents of a BIT STRING with no unused bits.
fn bit_string_bytes<'a>(contents: &'a [u8], what: &'static str) -> Result<&'a [u8], CertError> {
    match contents.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(CertError::Malformed(what)),
    }
}

impl Certificate {
    /// Parses DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CERT_LEN {
            return Err(CertError::TooLarge(der.len()));
        }
        let mut outer = Der::new(der);
        let cert = outer.read_tagged(TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
        if !outer.rest.is_empty() {
            return Err(CertError::Malformed("trailing bytes after certificate"));
        }
        let mut cert = Der::new(cert);
        let tbs = cert.read_tagged(TAG_SEQUENCE, "tbsCertificate")?;
        cert.read_tagged(TAG_SEQUENCE, "signatureAlgorithm")?;
        let sig = cert.read_tagged(TAG_BIT_STRING, "signatureValue")?;
        let signature = bit_string_bytes(sig, "signatureValue has unused bits")?;
        if signature.is_empty() {
            return Err(CertError::Malformed("empty signatureValue"));
        }

        let mut tbs = Der::new(tbs);
        if tbs.peek_tag() == Some(TAG_VERSION) {
            tbs.next()?;
        }
        tbs.read_tagged(TAG_INTEGER, "serialNumber")?;
        tbs.read_tagged(TAG_SEQUENCE, "signature")?;
        tbs.read_tagged(TAG_SEQUENCE, "issuer")?;
        tbs.read_tagged(TAG_SEQUENCE, "validity")?;
        tbs.read_tagged(TAG_SEQUENCE, "subject")?;
        let spki = tbs.read_tagged(TAG_SEQUENCE, "subjectPublicKeyInfo")?;

        let mut spki = Der::new(spki);
        let alg = spki.read_tagged(TAG_SEQUENCE, "key algorithm")?;
        let key = spki.read_tagged(TAG_BIT_STRING, "subjectPublicKey")?;
        let key = bit_string_bytes(key, "subjectPublicKey has unused bits")?;
        let mut alg = Der::new(alg);
        let oid = alg.read_tagged(TAG_OID, "key algorithm OID")?;
        let key_kind = if oid == OID_RSA {
            KeyKind::Rsa
        } else if oid == OID_ED25519 {
            KeyKind::Ed25519
        } else if oid == OID_EC_PUBLIC_KEY {
            match alg.read_tagged(TAG_OID, "EC curve")? {
                c if c == OID_P256 => KeyKind::EcdsaP256,
                c if c == OID_P384 => KeyKind::EcdsaP384,
                _ => return Err(CertError::UnsupportedKey),
            }
        } else {
            return Err(CertError::UnsupportedKey);
        };

        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        Ok(Self {
            der: der.to_vec(),
            signature: signature.to_vec(),
            key_kind,
            key: key.to_vec(),
            fingerprint,
        })
    }

    /// Parses the first `CERTIFICATE` block of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertError> {
        let der = CertificateDer::from_pem_slice(pem).map_err(|_| CertError::NotPem)?;
        Self::from_der(der.as_ref())
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text (`-----BEGIN CERTIFICATE-----`, 64-column base64, LF line ends).
    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// `sig(cert)`: the bytes of the `signatureValue` BIT STRING (256 for RSA-2048).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The kind of public key.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The subject public key: PKCS#1 `RSAPublicKey` DER, an uncompressed EC point, or the
    /// Ed25519 key.
    pub fn public_key(&self) -> &[u8] {
        &self.key
    }

    /// SHA-256 of the DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Verifies `sig` over `msg` with this certificate's key.
    pub fn verify(&self, alg: SigAlg, msg: &[u8], sig: &[u8]) -> Result<(), CertError> {
        let (kind, ring_alg) = alg.ring();
        if kind != self.key_kind {
            return Err(CertError::AlgorithmMismatch);
        }
        UnparsedPublicKey::new(ring_alg, &self.key)
            .verify(msg, sig)
            .map_err(|_| CertError::BadSignature)
    }

    /// Verifies a pairing signature: "RSA PKCS#1 v1.5 with SHA-256" (`EVP_DigestVerify` with
    /// `EVP_sha256`; notes "Pairing"), or ECDSA/SHA-256 should a client have an EC key.
    pub fn verify_pairing_signature(&self, msg: &[u8], sig: &[u8]) -> Result<(), CertError> {
        let alg = match self.key_kind {
            KeyKind::Rsa => SigAlg::RsaPkcs1Sha256,
            KeyKind::EcdsaP256 => SigAlg::EcdsaP256Sha256,
            _ => return Err(CertError::UnsupportedKey),
        };
        self.verify(alg, msg, sig)
    }
}

/// PEM-encodes `der` under `label` (RFC 7468: 64-column base64, LF line ends).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Moonlight-like client certificate (RSA-2048, CN "NVIDIA GameStream Client", SHA-256,
    /// self-signed), made with Python `cryptography` as moonlight-python's identity.py does.
    pub(crate) const CLIENT_CERT_PEM: &str = include_str!("../../tests/fixtures/client-cert.pem");
    /// Its private key (PKCS#8).
    pub(crate) const CLIENT_KEY_PEM: &str = include_str!("../../tests/fixtures/client-key.pem");

    #[test]
    fn reads_a_client_certificate() {
        let c = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap();
        assert_eq!(c.key_kind(), KeyKind::Rsa);
        assert_eq!(c.signature().len(), 256);
        // PEM round trip is byte-exact in DER.
        let again = Certificate::from_pem(c.to_pem().as_bytes()).unwrap();
        assert_eq!(again, c);
        // The signatureValue is the last 256 bytes of the DER.
        assert_eq!(c.signature(), &c.der()[c.der().len() - 256..]);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(Certificate::from_pem(b"hello"), Err(CertError::NotPem));
        assert!(matches!(
            Certificate::from_der(&[0x30, 0x80]),
            Err(CertError::Malformed(_))
        ));
        assert!(matches!(
            Certificate::from_der(&[0x30, 0x05, 0x01]),
            Err(CertError::Malformed(_))
        ));
        let c = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap();
        let mut der = c.der().to_vec();
        der.push(0);
        assert!(matches!(
            Certificate::from_der(&der),
            Err(CertError::Malformed(_))
        ));
        assert!(Certificate::from_der(&der[..der.len() - 2]).is_err());
    }

    #[test]
    fn verification_checks_algorithm_and_signature() {
        let c = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap();
        assert_eq!(
            c.verify(SigAlg::EcdsaP256Sha256, b"x", b"y"),
            Err(CertError::AlgorithmMismatch)
        );
        assert_eq!(
            c.verify_pairing_signature(b"x", &[0; 256]),
            Err(CertError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_mutations(pos in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let c = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap();
            let mut der = c.der().to_vec();
            let n = der.len();
            der[pos % n] = byte;
            let _ = Certificate::from_der(&der);
            let _ = Certificate::from_der(&der[..cut % n]);
        }

        #[test]
        fn never_panics_on_noise(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Certificate::from_der(&bytes);
        }
    }
}

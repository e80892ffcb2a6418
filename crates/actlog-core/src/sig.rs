//! The one rule for accepting an ed25519 signature.
//!
//! Ingest (single or batched) and `actlog verify` (batched, in parallel) must
//! accept exactly the same signatures, whichever grouping they use. ed25519
//! implementations disagree at the edges: small-order keys, non-canonical point
//! encodings, and whether the verification equation is multiplied by the
//! cofactor. A batch checked with random coefficients and no cofactor can
//! accept a signature that single verification rejects, depending on the
//! batch it sits in. So actlog pins one rule (documented in
//! `docs/formats.md`, "Signature acceptance rule"):
//!
//! 1. The public key is the canonical encoding of a curve point, is not of
//!    small order, and lies in the prime-order subgroup (torsion-free).
//!    Checked when a key is registered and again whenever it is loaded.
//! 2. The signature's `S` is canonical (`S < ℓ`).
//! 3. The signature's `R` is the canonical encoding of a curve point that is
//!    not of small order.
//! 4. The **cofactored** equation holds: `[8]([S]B − R − [k]A) = 𝒪` with
//!    `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! Single verification checks (4) directly. Batch verification checks
//! `[8](Σ zᵢ([Sᵢ]B − Rᵢ − [kᵢ]Aᵢ)) = 𝒪` with 128-bit coefficients `zᵢ`
//! derived from a hash of the whole batch. Because both equations are
//! cofactored, a batch accepts only if every member satisfies (4), up to a
//! 2⁻¹²⁸ chance; when a batch fails, each member is re-checked singly, so the
//! set of accepted signatures never depends on the batch. This is the rule of
//! ZIP 215 with strict encodings added.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// Why a public key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The 32 bytes are not a canonical point encoding.
    #[error("public key is not a canonical curve point encoding")]
    KeyEncoding,
    /// The key is of small order (a "weak" key).
    #[error("public key is of small order")]
    KeySmallOrder,
    /// The key has a torsion component.
    #[error("public key is not in the prime-order subgroup")]
    KeyTorsion,
    /// `S` is not reduced modulo ℓ.
    #[error("signature scalar S is not canonical")]
    NonCanonicalS,
    /// `R` is not a canonical point encoding.
    #[error("signature point R is not a canonical curve point encoding")]
    REncoding,
    /// `R` is of small order.
    #[error("signature point R is of small order")]
    RSmallOrder,
    /// The verification equation does not hold.
    #[error("signature does not verify")]
    Equation,
    /// The signature is not 64 bytes.
    #[error("signature is not 64 bytes")]
    Length,
}

/// A public key that passed rule (1). Cheap to clone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.bytes))
    }
}

/// Whether the encoded y coordinate is below p = 2^255 − 19. The only
/// other non-canonical encodings (x = 0 with the sign bit set) are of small
/// order, which the rule refuses separately.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed)
}

fn decompress_canonical(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !y_is_canonical(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

impl PublicKey {
    /// Validates raw key bytes against rule (1).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SigError> {
        let point = decompress_canonical(bytes).ok_or(SigError::KeyEncoding)?;
        // Keys are checked once, so the full round trip is affordable here.
        if point.compress().as_bytes() != bytes {
            return Err(SigError::KeyEncoding);
        }
        if point.is_small_order() {
            return Err(SigError::KeySmallOrder);
        }
        if !point.is_torsion_free() {
            return Err(SigError::KeyTorsion);
        }
        Ok(Self { bytes: *bytes, point })
    }

    /// The raw 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// A signature whose encodings passed rules (2) and (3), ready for the equation.
struct Prepared {
    r: EdwardsPoint,
    r_bytes: [u8; 32],
    s: Scalar,
    k: Scalar,
    a: EdwardsPoint,
    a_bytes: [u8; 32],
}

fn prepare(key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<Prepared, SigError> {
    let sig: &[u8; 64] = sig.try_into().map_err(|_| SigError::Length)?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SigError::NonCanonicalS)?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let r = decompress_canonical(&r_bytes).ok_or(SigError::REncoding)?;
    if r.is_small_order() {
        return Err(SigError::RSmallOrder);
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.bytes);
    h.update(msg);
    let wide: [u8; 64] = h.finalize().into();
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    Ok(Prepared { r, r_bytes, s, k, a: key.point, a_bytes: key.bytes })
}

/// Verifies one signature under the pinned rule.
pub fn verify(key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), SigError> {
    let p = prepare(key, msg, sig)?;
    // [S]B − [k]A − R, then clear the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &p.a, &p.s);
    if (sb_minus_ka - p.r).mul_by_cofactor().is_identity() { Ok(()) } else { Err(SigError::Equation) }
}

/// One item of a batch: key, message, signature bytes.
pub type BatchItem<'a> = (&'a PublicKey, &'a [u8], &'a [u8]);

/// Verifies many signatures under the pinned rule.
///
/// Returns one result per item, in order. The results are exactly those of
/// calling [`verify`] on each item: the batch equation is only a fast path.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SigError>> {
    let mut results: Vec<Result<(), SigError>> = Vec::with_capacity(items.len());
    let mut prepared: Vec<(usize, Prepared)> = Vec::with_capacity(items.len());
    for (i, (key, msg, sig)) in items.iter().enumerate() {
        match prepare(key, msg, sig) {
            Ok(p) => {
                results.push(Ok(()));
                prepared.push((i, p));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if prepared.len() <= 1 {
        for (i, _) in &prepared {
            let (key, msg, sig) = items[*i];
            results[*i] = verify(key, msg, sig);
        }
        return results;
    }
    if !batch_equation(&prepared) {
        // Find the culprits with the single rule; the batch only ever
        // speeds up the common, all-valid case.
        for (i, _) in &prepared {
            let (key, msg, sig) = items[*i];
            results[*i] = verify(key, msg, sig);
        }
    }
    results
}

fn batch_equation(prepared: &[(usize, Prepared)]) -> bool {
    // The coefficients must be unpredictable to whoever made the signatures,
    // so they are derived from a hash over every (R, A, S, k) in the batch.
    let mut transcript = blake3::Hasher::new_derive_key("actlog 2026 ed25519 batch coefficients");
    for (_, p) in prepared {
        transcript.update(&p.r_bytes);
        transcript.update(&p.a_bytes);
        transcript.update(p.s.as_bytes());
        transcript.update(p.k.as_bytes());
    }
    let mut xof = transcript.finalize_xof();
    let n = prepared.len();
    let mut scalars: Vec<Scalar> = Vec::with_capacity(1 + 2 * n);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(1 + 2 * n);
    let mut b_coefficient = Scalar::ZERO;
    let mut zs = Vec::with_capacity(n);
    for (_, p) in prepared {
        let mut z_bytes = [0u8; 32];
        xof.fill(&mut z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        b_coefficient += z * p.s;
        zs.push(z);
    }
    scalars.push(-b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for (z, (_, p)) in zs.iter().zip(prepared) {
        scalars.push(*z);
        points.push(p.r);
        scalars.push(z * p.k);
        points.push(p.a);
    }
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    sum.mul_by_cofactor().is_identity()
}

/// Signs `msg` with a 32-byte ed25519 seed. Signing is deterministic (RFC 8032).
pub fn sign(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    ed25519_dalek::SigningKey::from_bytes(seed).sign(msg).to_bytes()
}

/// The public key of a 32-byte ed25519 seed.
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn key(seed: u8) -> ([u8; 32], PublicKey) {
        let seed = [seed; 32];
        let pk = PublicKey::from_bytes(&public_key_of(&seed)).unwrap();
        (seed, pk)
    }

    #[test]
    fn valid_signature_verifies_single_and_batched() {
        let (seed, pk) = key(1);
        let sig = sign(&seed, b"hello");
        assert_eq!(verify(&pk, b"hello", &sig), Ok(()));
        assert_eq!(verify(&pk, b"hellO", &sig), Err(SigError::Equation));
        let items: Vec<BatchItem<'_>> = vec![(&pk, b"hello", &sig), (&pk, b"hellO", &sig), (&pk, b"hello", &sig)];
        assert_eq!(verify_batch(&items), vec![Ok(()), Err(SigError::Equation), Ok(())]);
    }

    #[test]
    fn small_order_and_torsion_keys_are_refused() {
        // The identity is small order.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey::from_bytes(&id), Err(SigError::KeySmallOrder));
        for t in EIGHT_TORSION.iter() {
            assert_eq!(PublicKey::from_bytes(t.compress().as_bytes()), Err(SigError::KeySmallOrder));
        }
        // A valid key plus a torsion point of order 8 is mixed-order.
        let (_, pk) = key(2);
        let mixed = pk.point + EIGHT_TORSION[1];
        assert_eq!(PublicKey::from_bytes(mixed.compress().as_bytes()), Err(SigError::KeyTorsion));
        // y = p (non-canonical encoding of y = 0).
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xed;
        noncanon[31] = 0x7f;
        assert!(PublicKey::from_bytes(&noncanon).is_err());
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let (seed, pk) = key(3);
        let mut sig = sign(&seed, b"m");
        // S + ℓ is the same scalar, non-canonically encoded.
        let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
        let l_bytes: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        let mut out = [0u8; 32];
        for i in 0..32 {
            let v = s.as_bytes()[i] as u16 + l_bytes[i] as u16 + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        sig[32..].copy_from_slice(&out);
        assert_eq!(verify(&pk, b"m", &sig), Err(SigError::NonCanonicalS));
        assert_eq!(verify_batch(&[(&pk, b"m", &sig)]), vec![Err(SigError::NonCanonicalS)]);
    }

    #[test]
    fn small_order_r_is_refused() {
        let (_, pk) = key(4);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(EIGHT_TORSION[0].compress().as_bytes());
        assert_eq!(verify(&pk, b"m", &sig), Err(SigError::RSmallOrder));
        // y = p: a non-canonical encoding, refused before decompression.
        let mut r = [0xffu8; 32];
        r[0] = 0xed;
        r[31] = 0x7f;
        sig[..32].copy_from_slice(&r);
        assert_eq!(verify(&pk, b"m", &sig), Err(SigError::REncoding));
    }

    /// A signature whose R carries a torsion component: the cofactorless
    /// equation rejects it, the cofactored one accepts it. Under the pinned
    /// rule it is accepted, and identically so singly and in any batch.
    #[test]
    fn mixed_order_r_is_accepted_the_same_way_everywhere() {
        let seed = [5u8; 32];
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pk = PublicKey::from_bytes(&sk.verifying_key().to_bytes()).unwrap();
        let a = sk.to_scalar();
        let r = Scalar::from_bytes_mod_order([9u8; 32]);
        let r_point = EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1];
        let r_bytes = r_point.compress().to_bytes();
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(pk.as_bytes());
        h.update(b"edge");
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        // ed25519-dalek's strict (cofactorless) check says no ...
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
        let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(pk.as_bytes()).unwrap();
        assert!(dalek_key.verify_strict(b"edge", &dalek_sig).is_err());
        // ... the pinned rule says yes, singly and in every batch position.
        assert_eq!(verify(&pk, b"edge", &sig), Ok(()));
        let (seed2, pk2) = key(6);
        let good = sign(&seed2, b"other");
        for items in [
            vec![(&pk, &b"edge"[..], &sig[..]), (&pk2, &b"other"[..], &good[..])],
            vec![(&pk2, &b"other"[..], &good[..]), (&pk, &b"edge"[..], &sig[..])],
        ] {
            assert!(verify_batch(&items).iter().all(|r| r.is_ok()));
        }
    }
}

//! Media encryption on the client: the server only ever stores ciphertext.
//!
//! Each file gets a fresh random 32-byte media key, sent to the recipients inside the
//! (end-to-end encrypted) message. From it, HMAC-SHA256 derives an AES-256 key and a MAC key;
//! the blob is `iv (16) ‖ AES-256-CTR(file) ‖ HMAC-SHA256(iv ‖ ciphertext) (32)`: encrypt then
//! MAC, as WhatsApp's AES-CBC + HMAC, with CTR so that it streams without padding. Files are
//! processed in 1 MiB steps, never held whole; decryption checks the MAC before it reports
//! success and deletes its output when the MAC or the plaintext hash is wrong.

use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// Bytes before the ciphertext (the IV).
pub const IV_BYTES: u64 = 16;
/// Bytes after the ciphertext (the MAC).
pub const MAC_BYTES: u64 = 32;
/// Read and write step.
const STEP: usize = 1 << 20;

/// Why a file could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or writing a file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The key is not 32 bytes.
    #[error("a media key has 32 bytes, not {0}")]
    BadKey(usize),
    /// The blob is shorter than its IV and MAC.
    #[error("the blob is too short to be encrypted media")]
    TooShort,
    /// The MAC does not match: the blob was altered or the key is wrong.
    #[error("the blob's MAC does not match (altered, or not this key)")]
    BadMac,
    /// The decrypted file does not have the hash the message promised.
    #[error("the decrypted file's SHA-256 is not the one the message carries")]
    BadHash,
}

/// What encrypting a file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The media key (goes in the message, never to the server).
    pub key: [u8; 32],
    /// SHA-256 of the plaintext (goes in the message).
    pub plaintext_sha256: [u8; 32],
    /// Size of the plaintext.
    pub plaintext_bytes: u64,
    /// SHA-256 of the blob (what the server checks and names it by).
    pub blob_sha256: [u8; 32],
    /// Size of the blob.
    pub blob_bytes: u64,
}

fn keys(key: &[u8]) -> Result<([u8; 32], [u8; 32]), CryptoError> {
    if key.len() != 32 {
        return Err(CryptoError::BadKey(key.len()));
    }
    let derive = |label: &[u8]| -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    };
    Ok((derive(b"iris media v1 aes-256-ctr"), derive(b"iris media v1 hmac-sha256")))
}

/// Encrypts `src` into `dst` under a fresh random key.
pub async fn encrypt_file(src: &Path, dst: &Path) -> Result<Encrypted, CryptoError> {
    encrypt_file_with(src, dst, rand::random(), rand::random()).await
}

/// Encrypts with a given key and IV (tests).
pub async fn encrypt_file_with(src: &Path, dst: &Path, key: [u8; 32], iv: [u8; 16]) -> Result<Encrypted, CryptoError> {
    let (enc_key, mac_key) = keys(&key)?;
    let mut cipher = Aes256Ctr::new(&enc_key.into(), &iv.into());
    let mut mac = HmacSha256::new_from_slice(&mac_key).expect("HMAC takes any key length");
    let (mut plain_hash, mut blob_hash) = (Sha256::new(), Sha256::new());
    let mut input = tokio::fs::File::open(src).await?;
    let mut output = tokio::fs::File::create(dst).await?;
    output.write_all(&iv).await?;
    mac.update(&iv);
    blob_hash.update(iv);
    let mut buf = vec![0u8; STEP];
    let mut plaintext_bytes = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        plain_hash.update(&buf[..n]);
        plaintext_bytes += n as u64;
        cipher.apply_keystream(&mut buf[..n]);
        mac.update(&buf[..n]);
        blob_hash.update(&buf[..n]);
        output.write_all(&buf[..n]).await?;
    }
    let tag = mac.finalize().into_bytes();
    blob_hash.update(tag);
    output.write_all(&tag).await?;
    output.flush().await?;
    Ok(Encrypted {
        key,
        plaintext_sha256: plain_hash.finalize().into(),
        plaintext_bytes,
        blob_sha256: blob_hash.finalize().into(),
        blob_bytes: plaintext_bytes + IV_BYTES + MAC_BYTES,
    })
}

/// Decrypts blob file `src` into `dst` with `key`, checking the MAC and, when given, the
/// plaintext's SHA-256; on any failure `dst` is removed.
pub async fn decrypt_file(
    src: &Path,
    dst: &Path,
    key: &[u8],
    plaintext_sha256: Option<&[u8]>,
) -> Result<(), CryptoError> {
    let result = decrypt_inner(src, dst, key, plaintext_sha256).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dst).await;
    }
    result
}

async fn decrypt_inner(src: &Path, dst: &Path, key: &[u8], want: Option<&[u8]>) -> Result<(), CryptoError> {
    let (enc_key, mac_key) = keys(key)?;
    let total = tokio::fs::metadata(src).await?.len();
    if total < IV_BYTES + MAC_BYTES {
        return Err(CryptoError::TooShort);
    }
    let mut input = tokio::fs::File::open(src).await?;
    let mut iv = [0u8; 16];
    input.read_exact(&mut iv).await?;
    let mut cipher = Aes256Ctr::new(&enc_key.into(), &iv.into());
    let mut mac = HmacSha256::new_from_slice(&mac_key).expect("HMAC takes any key length");
    mac.update(&iv);
    let mut plain_hash = Sha256::new();
    let mut output = tokio::fs::File::create(dst).await?;
    let mut left = total - IV_BYTES - MAC_BYTES;
    let mut buf = vec![0u8; STEP];
    while left > 0 {
        let want_now = (left as usize).min(STEP);
        input.read_exact(&mut buf[..want_now]).await?;
        mac.update(&buf[..want_now]);
        cipher.apply_keystream(&mut buf[..want_now]);
        plain_hash.update(&buf[..want_now]);
        output.write_all(&buf[..want_now]).await?;
        left -= want_now as u64;
    }
    let mut tag = [0u8; 32];
    input.read_exact(&mut tag).await?;
    mac.verify_slice(&tag).map_err(|_| CryptoError::BadMac)?;
    if want.is_some_and(|w| w != plain_hash.finalize().as_slice()) {
        return Err(CryptoError::BadHash);
    }
    output.flush().await?;
    Ok(())
}

/// Encrypts bytes in memory (thumbnails, at most a few hundred KiB): the same format.
pub fn encrypt_bytes(plain: &[u8], key: [u8; 32]) -> Vec<u8> {
    let (enc_key, mac_key) = keys(&key).expect("32-byte key");
    let iv: [u8; 16] = rand::random();
    let mut out = iv.to_vec();
    let mut body = plain.to_vec();
    Aes256Ctr::new(&enc_key.into(), &iv.into()).apply_keystream(&mut body);
    out.extend_from_slice(&body);
    let mut mac = HmacSha256::new_from_slice(&mac_key).expect("HMAC takes any key length");
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Decrypts bytes made by [`encrypt_bytes`] (or a small blob).
pub fn decrypt_bytes(blob: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (enc_key, mac_key) = keys(key)?;
    if (blob.len() as u64) < IV_BYTES + MAC_BYTES {
        return Err(CryptoError::TooShort);
    }
    let (body, tag) = blob.split_at(blob.len() - MAC_BYTES as usize);
    let mut mac = HmacSha256::new_from_slice(&mac_key).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| CryptoError::BadMac)?;
    let iv: [u8; 16] = body[..16].try_into().expect("16 bytes");
    let mut plain = body[16..].to_vec();
    Aes256Ctr::new(&enc_key.into(), &iv.into()).apply_keystream(&mut plain);
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, blob, out) = (dir.path().join("p"), dir.path().join("b"), dir.path().join("o"));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&plain, &data).unwrap();
        let e = encrypt_file(&plain, &blob).await.unwrap();
        let stored = std::fs::read(&blob).unwrap();
        assert_eq!(stored.len() as u64, e.blob_bytes);
        assert_eq!(Sha256::digest(&stored).as_slice(), e.blob_sha256);
        assert!(stored.windows(64).all(|w| w != &data[..64]), "no plaintext in the blob");
        decrypt_file(&blob, &out, &e.key, Some(&e.plaintext_sha256)).await.unwrap();
        assert!(std::fs::read(&out).unwrap() == data);

        let mut bad = stored.clone();
        bad[1000] ^= 1;
        std::fs::write(&blob, &bad).unwrap();
        assert!(matches!(decrypt_file(&blob, &out, &e.key, None).await, Err(CryptoError::BadMac)));
        assert!(!out.exists(), "no output left behind");
        std::fs::write(&blob, &stored).unwrap();
        assert!(matches!(decrypt_file(&blob, &out, &[7; 32], None).await, Err(CryptoError::BadMac)));
        assert!(matches!(decrypt_file(&blob, &out, &e.key, Some(&[0; 32])).await, Err(CryptoError::BadHash)));

        let small = encrypt_bytes(b"thumb", [3; 32]);
        assert_eq!(decrypt_bytes(&small, &[3; 32]).unwrap(), b"thumb");
        assert!(decrypt_bytes(&small, &[4; 32]).is_err());
    }
}

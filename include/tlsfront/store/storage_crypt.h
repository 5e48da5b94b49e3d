/*
 * storage_crypt.h: the envelope that keeps secret storage values (private keys, the ACME
 * account key) unreadable to whoever can read the shared store (a Redis dump, a replica):
 * AES-256-GCM under a 32-byte key read once at start-up from --storage-key FILE, with the
 * storage key name as additional authenticated data so a sealed value moved to another key
 * does not open. Envelope: "TFE1" | key id (4 bytes: SHA-256 of the key, cut) | 12-byte
 * random nonce | ciphertext | 16-byte tag. The key id tells "sealed under another key" apart
 * from "altered". Pure apart from tf_storage_crypt_load (one blocking file read).
 */
#ifndef TF_STORAGE_CRYPT_H
#define TF_STORAGE_CRYPT_H

#include <stdbool.h>
#include <stddef.h>

#define TF_STORAGE_CRYPT_MAGIC "TFE1"
/* Bytes an envelope adds to its plaintext. */
#define TF_STORAGE_CRYPT_OVERHEAD (4 + 4 + 12 + 16)

struct tf_storage_crypt;

/* Read the key file: exactly 64 hexadecimal digits (32 bytes; `openssl rand -hex 32`), with
 * optional surrounding whitespace. NULL with err filled ("--storage-key FILE: ...") when the
 * file is unreadable or holds anything else. Blocking: start-up only. */
struct tf_storage_crypt *tf_storage_crypt_load(const char *file, char *err, size_t errlen);
/* The same from 32 raw bytes (tests). */
struct tf_storage_crypt *tf_storage_crypt_new(const unsigned char key[32]);
void tf_storage_crypt_free(struct tf_storage_crypt *c);

/* True when data starts like an envelope. */
bool tf_storage_crypt_sealed(const void *data, size_t len);

/* Seal len bytes of in for storage key name; *out (heap, caller frees) gets the envelope.
 * 0 or TF_ETLS (the OpenSSL queue is cleared). */
int tf_storage_crypt_seal(const struct tf_storage_crypt *c, const char *name, const void *in,
                          size_t len, char **out, size_t *outlen);

/* Open an envelope sealed for name: *out is NUL-terminated beyond *outlen (heap, caller
 * frees). 0, TF_EDENIED (sealed under another key: *other_id gets its id as 8 hex digits),
 * or TF_EPROTO (truncated, altered, or sealed for another name). */
int tf_storage_crypt_open(const struct tf_storage_crypt *c, const char *name, const void *in,
                          size_t len, char **out, size_t *outlen, char other_id[9]);

/* Our key id as 8 hex digits, for messages. */
void tf_storage_crypt_id(const struct tf_storage_crypt *c, char id[9]);

#endif

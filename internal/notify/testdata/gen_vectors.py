# Produces vectors.json: AES-GCM-encrypted FileStoreNotification bodies in
# LSEG's FileNoti layout (base64 of AAD(16, nonce = last 12) | ciphertext | tag(16)),
# made with Python's `cryptography` package, independently of the Go code.
# Run: python3 gen_vectors.py > vectors.json (no network needed).
import base64, json, os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def enc(key, plain, aad):
    ct = AESGCM(key).encrypt(aad[-12:], plain, aad)  # ct || tag
    return base64.b64encode(aad + ct).decode()

note = {
  "ecpMessageID": "urn:uuid:4b3c",
  "distributionSeqNo": 7,
  "payload": {"FileStoreNotification": {
    "currentAt": "2026-12-05T04:00:00.000Z",
    "fileset": {
      "id": "4e94-6d63-fea0bf8b-b4b6-2c2b1d9a3c11", "bucketName": "bulk-ESG",
      "packageId": "4fbb-f1b5-d428da4f-9392-28214215d35a", "packageName": "ESG Scores",
      "name": "ESG_2026-12-05", "status": "READY", "numFiles": 2,
      "availableFrom": "2026-12-05T03:59:00Z", "availableTo": "2027-01-04T03:59:00Z",
      "files": {"values": [
        {"id": "4edd-99af-da829f42-8ddd-07fabfcddca9", "filename": "a.csv.gz", "fileSizeInBytes": 1234,
         "href": "https://api.refinitiv.com/file-store/v1/files/4edd-99af-da829f42-8ddd-07fabfcddca9/stream"},
        {"id": "4edd-99af-da829f42-8ddd-07fabfcddcb0", "filename": "b.csv.gz", "fileSizeInBytes": 5678,
         "href": "https://api.refinitiv.com/file-store/v1/files/4edd-99af-da829f42-8ddd-07fabfcddcb0/stream"}]}}}}
}
key = bytes(range(32))
key128 = bytes(range(100, 116))
aad = bytes(range(200, 216))
plain = json.dumps(note, separators=(",", ":")).encode()
good = enc(key, plain, aad)
raw = base64.b64decode(good)
out = {
  "key": base64.b64encode(key).decode(),
  "key128": base64.b64encode(key128).decode(),
  "wrong_key": base64.b64encode(bytes(31) + b"\x01").decode(),
  "plain": plain.decode(),
  "body": good,
  "body_aes128": enc(key128, plain, aad),
  "body_empty_plain": enc(key, b"", aad),
  "body_tampered": base64.b64encode(raw[:40] + bytes([raw[40] ^ 1]) + raw[41:]).decode(),
  "body_truncated": base64.b64encode(raw[:-1]).decode(),
  "body_too_short": base64.b64encode(raw[:31]).decode(),
  "body_not_json": enc(key, b"not json", aad),
}
print(json.dumps(out, indent=1))

-- Every identifier of a live Device (system|value, and manufacturer|serialNumber), held once:
-- a device door files a reading under the Device its identifier names, so two Devices with one
-- identifier would let a second claimant receive the first one's readings (issue 11).
-- Maintained by src/devices/identity.ts in the transaction of every Device write.
CREATE TABLE IF NOT EXISTS device_identity (
  key       text PRIMARY KEY,
  device_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS device_identity_device_idx ON device_identity (device_id);

-- A completed dirty-day scan: every dirty day it found was rebuilt before this is written,
-- so a crash before it only makes the next scan read the same ingests again.
INSERT INTO rollup_scans (scanned_at, day, since, up_to, carried_from, carried_to, dirty_days)
VALUES (
    {scanned_at:DateTime64(3, 'UTC')},
    {day:Date},
    {since:Date},
    {up_to:Date},
    {carried_from:Date},
    {carried_to:Date},
    {dirty_days:UInt32}
)

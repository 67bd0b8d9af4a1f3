-- Per source: how many rows were accepted, duplicates, or rejected for each reason.
SELECT source, status, reason, count() AS n,
       groupBitXor(sipHash64(seq, content_hash)) AS fingerprint
FROM {{classified}}
GROUP BY source, status, reason
ORDER BY source, status, reason

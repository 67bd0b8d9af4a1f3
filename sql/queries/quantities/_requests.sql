-- Fragment, included as quantities/_requests: the (customer, window number) pairs a batched
-- quantities query is asked for, as a table to join on customer_id.
(
    SELECT t.1 AS customer_id, t.2 AS w
    FROM (SELECT arrayJoin({requests:Array(Tuple(String, UInt32))}) AS t)
)

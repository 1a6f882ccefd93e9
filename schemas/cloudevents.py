"""The CloudEvents 1.0 JSON profile of a catalog event (docs/routing.md): which attributes map
to which envelope fields. Samband's envelope fields travel as lower-case extension attributes."""

# CloudEvents attributes copied to the envelope as they are.
ATTRIBUTES = ("id", "source", "type", "specversion", "subject", "dataschema")

# Extension attribute -> envelope field.
EXTENSIONS = {
    "person": "person",
    "kommunenummer": "kommunenummer",
    "addressprotection": "addressProtection",
    "changekind": "changeKind",
    "correctseventid": "correctsEventId",
    "sequencenumber": "sequenceNumber",
    "correlationid": "correlationId",
}

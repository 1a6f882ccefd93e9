"""The Folkeregister-style wire format the synthetic generator emits (docs/folkeregister-feed.md).

A feed entry is the short pointer the feed pages list; the event document, fetched by
its id, carries the change itself. Both are plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field

# Entitetsendring: what the document does to the register's knowledge.
REGISTRERE_NY = "registrereNy"
KORRIGERE = "korrigere"
ANNULLERE = "annullere"
KORRIGERE_HISTORISK = "korrigereHistorisk"
ENTITETSENDRINGER = (REGISTRERE_NY, KORRIGERE, ANNULLERE, KORRIGERE_HISTORISK)

# Hendelsetyper the generator emits (docs/domain.md §3).
PERSON_ER_OPPRETTET = "personErOpprettet"
PERSON_ER_DOED = "personErDoed"
PERSON_ER_BOSATT = "personErBosatt"
PERSON_ER_UTFLYTTET = "personErUtflyttet"
ENDRING_I_BOSTEDSADRESSE = "endringIBostedsadresse"
ENDRING_I_BOSTEDSADRESSE_UTEN_FLYTTING = "endringIBostedsadresseUtenFlytting"
ENDRING_I_BOSTEDSADRESSE_VED_KOMMUNEREGULERING = "endringIBostedsadresseVedKommuneregulering"
ENDRING_I_SIVILSTAND = "endringISivilstand"
ENDRING_I_NAVN = "endringINavn"
ENDRING_I_FORELDREANSVAR = "endringIForeldreansvar"
ENDRING_I_DELT_BOSTED = "endringIDeltBosted"
ENDRING_I_ADRESSEBESKYTTELSE = "endringIAdressebeskyttelse"
ENDRING_I_IDENTIFIKASJONSNUMMER = "endringIIdentifikasjonsnummer"
# Rarely handled or not yet known to consumers: the generator emits a small share of these.
ENDRING_I_STATSBORGERSKAP = "endringIStatsborgerskap"
ENDRING_I_OPPHOLD = "endringIOpphold"
FUTURE_TYPE = "endringISyntetiskFremtidigOpplysning"  # made up: stands for types that do not exist yet
UNUSUAL_TYPES = (ENDRING_I_STATSBORGERSKAP, ENDRING_I_OPPHOLD, FUTURE_TYPE)

FEED_PAGE_SIZE = 1000

API_PATH = "/folkeregisteret/offentlig-med-hjemmel/api/v1/hendelser"
# Bulk event documents: the simulator's (or a proxy's) extension; the register serves them one by one.
BULK_PATH = f"{API_PATH}/dokumenter"
BULK_LIMIT = FEED_PAGE_SIZE  # ids per bulk request


@dataclass(frozen=True)
class EventDocument:
    """One event document; `feed_entry()` is its line in the feed."""

    sekvensnummer: int
    hendelsesdokument: str
    hendelsetype: str
    folkeregisteridentifikator: str
    persondokument: str
    ajourholdstidspunkt: str  # ISO 8601, UTC
    entitetsendring: str
    adressebeskyttelse: str  # the person's level when the document was written
    opplysninger: dict = field(default_factory=dict)
    gjelderHendelsesdokument: str | None = None  # the earlier document a korrigere/annullere refers to

    def feed_entry(self) -> dict:
        return {
            "sekvensnummer": self.sekvensnummer,
            "hendelse": {
                "folkeregisteridentifikator": self.folkeregisteridentifikator,
                "hendelsetype": self.hendelsetype,
                "hendelsesdokument": self.hendelsesdokument,
                "persondokument": self.persondokument,
                "ajourholdstidspunkt": self.ajourholdstidspunkt,
            },
        }

    def document(self) -> dict:
        return {
            "hendelsesdokument": self.hendelsesdokument,
            "sekvensnummer": self.sekvensnummer,
            "hendelsetype": self.hendelsetype,
            "folkeregisteridentifikator": self.folkeregisteridentifikator,
            "persondokument": self.persondokument,
            "ajourholdstidspunkt": self.ajourholdstidspunkt,
            "entitetsendring": self.entitetsendring,
            "gjelderHendelsesdokument": self.gjelderHendelsesdokument,
            "adressebeskyttelse": self.adressebeskyttelse,
            "opplysninger": self.opplysninger,
        }


def document_id(seed: int, sekvensnummer: int, kind: str = "hendelse") -> str:
    """A UUID that depends only on seed, sequence number and kind: same seed, same ids."""
    digest = hashlib.blake2b(f"{kind}:{seed}:{sekvensnummer}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def to_json_bytes(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

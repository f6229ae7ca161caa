"""The record moved to carbonfast.record; its names are still found here."""

from carbonfast.record import KINDS as KINDS
from carbonfast.record import PARTS as PARTS
from carbonfast.record import Attributed as Attributed
from carbonfast.record import DomainRecord as DomainRecord
from carbonfast.record import Kind as Kind
from carbonfast.record import Record as Record
from carbonfast.record import domain_records as domain_records

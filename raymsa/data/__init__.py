"""MMSA feature data: safe loading of the field's pickles, the embedded synthetic default, checks."""

from raymsa.data.default import default_data_path, load_default
from raymsa.data.mmsa import (
    DATASETS,
    KNOWN_FILES,
    Deferred,
    guess_dataset,
    load_mmsa,
    mmsa_from_dict,
    save_mmsa,
    sha256_file,
)
from raymsa.data.synth import GENERATOR_VERSION, linear_probe, synthesize, synthesize_raw, write_synth
from raymsa.data.types import SPLITS, DataError, MMSAData, Split

__all__ = [
    "DATASETS",
    "GENERATOR_VERSION",
    "KNOWN_FILES",
    "SPLITS",
    "DataError",
    "Deferred",
    "MMSAData",
    "Split",
    "default_data_path",
    "guess_dataset",
    "linear_probe",
    "load_default",
    "load_mmsa",
    "mmsa_from_dict",
    "save_mmsa",
    "sha256_file",
    "synthesize",
    "synthesize_raw",
    "write_synth",
]

"""Medications: what a patient takes for each condition, and what a stay adds at discharge.

A patient's home list follows from the conditions their chart documents (so a long list goes with
many conditions, as it does in real charts), and is the same at every encounter. The training
hospitals write US drug names and frequencies; the external system writes British names (paracetamol,
salbutamol) and frequencies (OD, BD, TDS, ON), another piece of its held-out dialect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sites.synthetic.styles import NoteStyle


@dataclass(frozen=True)
class Drug:
    """One medication line: US and British wording (name, dose, route) and its frequency key."""

    us: str
    uk: str
    frequency: str


FREQUENCIES: dict[str, tuple[str, str, str]] = {
    "daily": ("daily", "daily", "OD"),
    "bid": ("twice daily", "BID", "BD"),
    "tid": ("three times daily", "TID", "TDS"),
    "qhs": ("at bedtime", "qHS", "ON"),
    "prn": ("as needed", "PRN", "PRN"),
    "weekly": ("weekly", "qweek", "once weekly"),
}
"""Frequency key -> (plain, short, British)."""


def _d(us: str, uk: str, frequency: str) -> Drug:
    return Drug(us, uk, frequency)


DRUGS: dict[str, Drug] = {
    "furosemide": _d("furosemide 40 mg PO", "furosemide 40mg", "daily"),
    "furosemide_high": _d("furosemide 80 mg PO", "furosemide 80mg", "bid"),
    "metoprolol": _d("metoprolol succinate 50 mg PO", "bisoprolol 5mg", "daily"),
    "lisinopril": _d("lisinopril 10 mg PO", "ramipril 5mg", "daily"),
    "sacubitril": _d("sacubitril-valsartan 49-51 mg PO", "Entresto 49/51mg", "bid"),
    "spironolactone": _d("spironolactone 25 mg PO", "spironolactone 25mg", "daily"),
    "aspirin": _d("aspirin 81 mg PO", "aspirin 75mg", "daily"),
    "atorvastatin": _d("atorvastatin 40 mg PO", "atorvastatin 40mg", "qhs"),
    "atorvastatin_high": _d("atorvastatin 80 mg PO", "atorvastatin 80mg", "qhs"),
    "clopidogrel": _d("clopidogrel 75 mg PO", "clopidogrel 75mg", "daily"),
    "cilostazol": _d("cilostazol 100 mg PO", "naftidrofuryl 200mg", "bid"),
    "donepezil": _d("donepezil 10 mg PO", "donepezil 10mg", "qhs"),
    "memantine": _d("memantine 10 mg PO", "memantine 10mg", "bid"),
    "tiotropium": _d("tiotropium 18 mcg inhaled", "tiotropium 18mcg inh", "daily"),
    "fluticasone": _d("fluticasone-salmeterol 250/50 inhaled", "Seretide 250 Accuhaler", "bid"),
    "albuterol": _d("albuterol 2 puffs inhaled", "salbutamol 100mcg 2 puffs", "prn"),
    "methotrexate": _d("methotrexate 15 mg PO", "methotrexate 15mg", "weekly"),
    "folic_acid": _d("folic acid 1 mg PO", "folic acid 5mg", "weekly"),
    "hydroxychloroquine": _d("hydroxychloroquine 200 mg PO", "hydroxychloroquine 200mg", "bid"),
    "pantoprazole": _d("pantoprazole 40 mg PO", "lansoprazole 30mg", "daily"),
    "pantoprazole_bid": _d("pantoprazole 40 mg PO", "omeprazole 40mg", "bid"),
    "lactulose": _d("lactulose 20 g PO", "lactulose 15ml", "tid"),
    "rifaximin": _d("rifaximin 550 mg PO", "rifaximin 550mg", "bid"),
    "metformin": _d("metformin 1000 mg PO", "metformin 1g", "bid"),
    "glipizide": _d("glipizide 5 mg PO", "gliclazide 80mg", "daily"),
    "glargine": _d("insulin glargine 24 units SC", "Lantus 24 units", "qhs"),
    "lispro": _d("insulin lispro sliding scale SC", "NovoRapid per sliding scale", "tid"),
    "gabapentin": _d("gabapentin 300 mg PO", "pregabalin 75mg", "tid"),
    "baclofen": _d("baclofen 10 mg PO", "baclofen 10mg", "tid"),
    "sevelamer": _d("sevelamer 800 mg PO with meals", "Renvela 800mg with meals", "tid"),
    "calcitriol": _d("calcitriol 0.25 mcg PO", "alfacalcidol 0.25mcg", "daily"),
    "anastrozole": _d("anastrozole 1 mg PO", "letrozole 2.5mg", "daily"),
    "ondansetron": _d("ondansetron 4 mg PO", "ondansetron 4mg", "prn"),
    "oxycodone": _d("oxycodone 5 mg PO", "Oramorph 5mg", "prn"),
    "dexamethasone": _d("dexamethasone 4 mg PO", "dexamethasone 4mg", "daily"),
    "biktarvy": _d("bictegravir-emtricitabine-tenofovir 1 tab PO", "Biktarvy 1 tab", "daily"),
    "bactrim": _d("trimethoprim-sulfamethoxazole DS 1 tab PO", "co-trimoxazole 960mg", "daily"),
    "amlodipine": _d("amlodipine 5 mg PO", "amlodipine 5mg", "daily"),
    "hctz": _d("hydrochlorothiazide 25 mg PO", "indapamide 2.5mg", "daily"),
    "omeprazole": _d("omeprazole 20 mg PO", "omeprazole 20mg", "daily"),
    "apixaban": _d("apixaban 5 mg PO", "apixaban 5mg", "bid"),
    "sertraline": _d("sertraline 50 mg PO", "sertraline 50mg", "daily"),
    "levothyroxine": _d("levothyroxine 75 mcg PO", "levothyroxine 75mcg", "daily"),
    "vitamin_d": _d("cholecalciferol 1000 units PO", "colecalciferol 800 units", "daily"),
    "acetaminophen": _d("acetaminophen 650 mg PO", "paracetamol 1g", "prn"),
    "senna": _d("senna 8.6 mg PO", "senna 15mg", "qhs"),
    "tamsulosin": _d("tamsulosin 0.4 mg PO", "tamsulosin 400mcg", "qhs"),
    "alendronate": _d("alendronate 70 mg PO", "alendronic acid 70mg", "weekly"),
    "amox_clav": _d("amoxicillin-clavulanate 875 mg PO", "co-amoxiclav 625mg", "bid"),
    "cefpodoxime": _d("cefpodoxime 200 mg PO", "doxycycline 100mg", "bid"),
    "cephalexin": _d("cephalexin 500 mg PO", "flucloxacillin 1g", "tid"),
    "levofloxacin": _d("levofloxacin 500 mg PO", "ciprofloxacin 500mg", "daily"),
    "prednisone": _d("prednisone 40 mg PO", "prednisolone 30mg", "daily"),
    "azithromycin": _d("azithromycin 250 mg PO", "clarithromycin 500mg", "daily"),
    "enoxaparin": _d("enoxaparin 40 mg SC", "dalteparin 5000 units", "daily"),
    "iron": _d("ferrous sulfate 325 mg PO", "ferrous fumarate 210mg", "daily"),
}
CONDITION_DRUGS: dict[str, tuple[str, ...]] = {
    "mi": ("aspirin", "atorvastatin_high", "metoprolol"),
    "chf": ("furosemide", "metoprolol", "sacubitril", "spironolactone"),
    "pvd": ("aspirin", "cilostazol", "atorvastatin"),
    "cvd": ("clopidogrel", "atorvastatin"),
    "dementia": ("donepezil", "memantine"),
    "copd": ("tiotropium", "fluticasone", "albuterol"),
    "rheumatic": ("methotrexate", "folic_acid", "hydroxychloroquine"),
    "peptic_ulcer": ("pantoprazole",),
    "liver_mild": (),
    "diabetes": ("metformin", "glipizide"),
    "diabetes_complicated": ("glargine", "lispro", "gabapentin"),
    "hemiplegia": ("baclofen",),
    "renal": ("sevelamer", "calcitriol"),
    "cancer": ("anastrozole", "ondansetron"),
    "liver_severe": ("lactulose", "rifaximin", "spironolactone"),
    "metastatic": ("oxycodone", "dexamethasone", "ondansetron"),
    "aids": ("biktarvy", "bactrim"),
    "htn": ("amlodipine", "hctz"),
    "hld": ("atorvastatin",),
    "gerd": ("omeprazole",),
    "afib": ("apixaban", "metoprolol"),
    "obesity": (),
    "depression": ("sertraline",),
    "hypothyroid": ("levothyroxine",),
    "osa": (),
}
"""Documented condition (Charlson or not) -> its usual home medications."""
NEW_AT_DISCHARGE: dict[str, tuple[str, ...]] = {
    "heart_failure": ("furosemide_high",),
    "pneumonia": ("amox_clav", "azithromycin"),
    "copd_exacerbation": ("prednisone", "azithromycin"),
    "sepsis": ("cefpodoxime",),
    "gi_bleed": ("pantoprazole_bid", "iron"),
    "stroke": ("aspirin", "clopidogrel", "atorvastatin_high"),
    "chest_pain": ("aspirin", "atorvastatin_high"),
    "syncope": (),
    "cellulitis": ("cephalexin",),
    "elective_surgery": ("oxycodone", "enoxaparin", "senna"),
    "hip_fracture": ("oxycodone", "enoxaparin", "senna", "vitamin_d"),
    "oncology": ("levofloxacin",),
}
"""Principal diagnosis -> medications a stay usually starts."""
STOPPED_AT_DISCHARGE: dict[str, tuple[str, ...]] = {
    "gi_bleed": ("aspirin", "apixaban", "clopidogrel"),
    "syncope": ("hctz",),
    "sepsis": ("metformin", "lisinopril"),
}
"""Principal diagnosis -> home medications a stay usually stops (held)."""


def medication_line(key: str, style: NoteStyle, *, short: bool) -> str:
    """`key`'s line in the style's dialect: name, dose, route and frequency."""
    drug = DRUGS[key]
    plain, abbreviated, british = FREQUENCIES[drug.frequency]
    if style.units == "uk":
        return f"{drug.uk} {british}"
    return f"{drug.us} {abbreviated if short else plain}"

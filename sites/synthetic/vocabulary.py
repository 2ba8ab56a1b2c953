"""How each fact can be written: plain words, abbreviations, and a held-out vocabulary.

Every concept has three sets of phrasings: `plain` and `short` (abbreviations) are shared by the
training hospitals, which differ in how often they abbreviate; `external` phrasings are used only by
the external health system's style (a different dialect: 'congestive cardiac failure', 'COAD',
'#NOF'), so a model trained on the training hospitals meets words it never saw there.

No phrasing states a label: no death, no return to hospital, no claim outcome, no stay length in an
admission note, no comorbidity score.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phrasing:
    """Ways to write one concept."""

    plain: tuple[str, ...]
    short: tuple[str, ...]
    external: tuple[str, ...]


def phrasing(plain: str, short: str, external: str) -> Phrasing:
    """Phrasings from '|'-separated alternatives."""
    return Phrasing(tuple(plain.split("|")), tuple(short.split("|")), tuple(external.split("|")))


_p = phrasing  # short name for the tables below


CONDITIONS: dict[str, Phrasing] = {
    "mi": _p("prior myocardial infarction|coronary artery disease with prior heart attack",
             "h/o MI|CAD s/p MI|NSTEMI in past", "IHD with previous MI|old inferior MI"),
    "chf": _p("congestive heart failure|heart failure with reduced ejection fraction",
              "CHF|HFrEF|systolic CHF", "congestive cardiac failure|CCF|LVSD"),
    "pvd": _p("peripheral vascular disease|peripheral arterial disease",
              "PVD|PAD s/p stent", "PVD with claudication|arteriopathy"),
    "cvd": _p("prior stroke|history of transient ischemic attack",
              "h/o CVA|prior TIA", "previous cerebrovascular event|old lacunar infarct"),
    "dementia": _p("dementia|Alzheimer dementia", "dementia|ALZ dementia",
                   "cognitive impairment, known to memory clinic|Alzheimer's disease, AMTS 5/10"),
    "copd": _p("chronic obstructive pulmonary disease|emphysema",
               "COPD|COPD on home O2", "COAD|chronic obstructive airways disease"),
    "rheumatic": _p("rheumatoid arthritis|systemic lupus", "RA on methotrexate|SLE",
                    "connective tissue disease|inflammatory arthropathy"),
    "peptic_ulcer": _p("peptic ulcer disease|gastric ulcer", "PUD|h/o PUD",
                       "previous duodenal ulceration|DU on OGD"),
    "liver_mild": _p("chronic hepatitis C|chronic liver disease", "HCV|chronic hep C",
                     "compensated CLD|hep C antibody positive"),
    "diabetes": _p("type 2 diabetes|diabetes mellitus", "DM2|T2DM|NIDDM",
                   "diet-controlled diabetes|diabetic on tablets"),
    "diabetes_complicated": _p("diabetes with nephropathy|insulin-dependent diabetes with "
                               "neuropathy", "DM2 c/b nephropathy|IDDM w/ neuropathy",
                               "diabetic with end-organ damage|insulin-requiring diabetic, "
                               "microvascular disease"),
    "hemiplegia": _p("hemiplegia|residual left hemiparesis", "hemiplegia|L hemiparesis",
                     "dense hemiparesis|residual weakness post stroke"),
    "renal": _p("chronic kidney disease stage 4|end-stage renal disease on dialysis",
                "CKD IV|ESRD on HD", "CRF|chronic renal failure on haemodialysis"),
    "cancer": _p("lung cancer|breast cancer|colon cancer|lymphoma",
                 "NSCLC|breast CA|colon CA|DLBCL",
                 "carcinoma of the bronchus|Ca breast|Ca colon|non-Hodgkin lymphoma"),
    "liver_severe": _p("cirrhosis with ascites|decompensated cirrhosis", "EtOH cirrhosis|ESLD",
                       "decompensated CLD|portal hypertension with varices"),
    "metastatic": _p("metastatic cancer|stage IV lung cancer", "metastatic NSCLC|stage IV CA",
                     "disseminated malignancy|known secondaries"),
    "aids": _p("AIDS|HIV with low CD4 count", "AIDS|HIV/AIDS", "advanced HIV disease"),
}
# Common conditions that are not Charlson conditions (noise a comorbidity model must ignore).
DISTRACTORS: dict[str, Phrasing] = {
    "htn": _p("hypertension", "HTN", "raised BP"),
    "hld": _p("hyperlipidemia", "HLD", "hypercholesterolaemia"),
    "gerd": _p("reflux", "GERD", "GORD"),
    "afib": _p("atrial fibrillation", "AFib", "AF on DOAC"),
    "obesity": _p("obesity", "obesity", "raised BMI"),
    "depression": _p("depression", "MDD", "low mood"),
    "hypothyroid": _p("hypothyroidism", "hypothyroid", "underactive thyroid"),
    "osa": _p("sleep apnea", "OSA", "OSA on CPAP"),
}
DIAGNOSES: dict[str, Phrasing] = {
    "heart_failure": _p("acute decompensated heart failure|volume overload from heart failure",
                        "ADHF|CHF exacerbation", "decompensated cardiac failure|fluid overload"),
    "pneumonia": _p("community-acquired pneumonia|pneumonia", "CAP|PNA",
                    "LRTI|chest sepsis"),
    "copd_exacerbation": _p("COPD exacerbation", "AECOPD|COPD flare",
                            "infective exacerbation of COAD|IECOPD"),
    "sepsis": _p("sepsis|sepsis from a urinary source", "sepsis|urosepsis",
                 "sepsis of unknown source|red flag sepsis"),
    "gi_bleed": _p("upper GI bleeding|melena", "UGIB|GIB", "haematemesis|melaena"),
    "stroke": _p("acute ischemic stroke|new right-sided weakness", "acute CVA|L MCA stroke",
                 "ischaemic stroke|FAST positive"),
    "chest_pain": _p("chest pain, rule out acute coronary syndrome|chest pain",
                     "CP r/o ACS|atypical CP", "cardiac-sounding chest pain|?ACS"),
    "syncope": _p("syncope|a syncopal episode", "syncope|syncopal episode",
                  "collapse ?cause|transient LOC"),
    "cellulitis": _p("cellulitis of the leg|lower extremity cellulitis",
                     "LLE cellulitis|LE cellulitis",
                     "erysipelas|leg cellulitis, failed oral abx"),
    "elective_surgery": _p("elective total knee arthroplasty|elective hip replacement",
                           "elective TKA|elective THA", "elective TKR|planned THR"),
    "hip_fracture": _p("hip fracture after a fall|femoral neck fracture",
                       "hip fx s/p fall|L hip fx",
                       "#NOF|fractured neck of femur"),
    "oncology": _p("neutropenic fever on chemotherapy|fever during chemotherapy",
                   "neutropenic fever|febrile neutropenia",
                   "neutropenic sepsis|post-chemo pyrexia"),
}
# Acuity on examination, from well (0) to critically ill (3).
ACUITY: tuple[Phrasing, ...] = (
    _p("well-appearing, in no acute distress|comfortable at rest", "NAD|WDWN, NAD",
       "looks well, obs stable|alert, comfortable, NEWS 0"),
    _p("mildly ill-appearing|uncomfortable but stable", "mild distress|uncomfortable",
       "unwell but stable|NEWS 3"),
    _p("ill-appearing, tachycardic and febrile|ill-appearing with labored breathing",
       "ill appearing, tachy|febrile, tachypneic", "systemically unwell|NEWS 6, clammy"),
    _p("critically ill, hypotensive on pressors|in respiratory distress, lactate elevated",
       "toxic appearing, on pressors|in extremis, intubated", "peri-arrest|shocked, NEWS 9"),
)
UNIT: dict[str, Phrasing] = {
    "icu": _p("admit to the intensive care unit|admit to the medical ICU", "admit MICU|to ICU",
              "admit ITU|refer to ITU, accepted"),
    "floor": _p("admit to the medicine floor|admit to telemetry", "admit floor|admit tele",
                "admit to ward|admit AMU"),
}
# Functional status, from independent (0) to bedbound (3).
FUNCTION: tuple[Phrasing, ...] = (
    _p("independent in daily activities|walks without assistance", "indep ADLs|ambulatory",
       "independently mobile|fully independent"),
    _p("walks with a cane|uses a walker", "ambulates w/ cane|uses walker",
       "mobilises with a frame|mobilises with stick"),
    _p("needs help with daily activities|uses a wheelchair", "assist w/ ADLs|wheelchair",
       "needs carers twice daily|chair-bound"),
    _p("bedbound, nursing home resident|bedbound, total care", "bedbound|NH resident, total care",
       "bed-bound, in residential care|hoisted, nursing home"),
)
SOCIAL: dict[str, Phrasing] = {
    "supported": _p("lives with family, good support|lives with spouse",
                    "lives w/ family|lives w/ spouse",
                    "lives with family, well supported|lives with partner"),
    "alone": _p("lives alone", "lives alone", "lives alone, no package of care"),
    "alcohol": _p("active alcohol use|drinks daily", "EtOH abuse|heavy EtOH",
                  "drinks 40 units a week|alcohol excess"),
    "substances": _p("uses heroin|polysubstance use", "IVDU|polysubstance", "PWID|opiate user"),
    "housing": _p("homeless|unstably housed", "homeless|unhoused", "no fixed abode|NFA"),
}
PAYERS: dict[str, Phrasing] = {
    "medicare": _p("Medicare", "MCR|Medicare", "Medicare FFS|traditional Medicare"),
    "medicare_advantage": _p("Medicare Advantage", "MA plan|Medicare Adv",
                             "Part C plan|MAPD HMO"),
    "medicaid": _p("Medicaid", "MCD|Medicaid", "state plan|Medi-Cal"),
    "commercial": _p("commercial insurance|private insurance", "BCBS|Aetna PPO",
                     "employer plan|private cover"),
    "self_pay": _p("uninsured|self-pay", "no insurance|self pay", "self-funding|no cover"),
}
DISPOSITIONS: dict[str, Phrasing] = {
    "home": _p("home|home with family", "home|home w/ family", "usual residence|home, no package"),
    "home_services": _p("home with visiting nurse|home with home health services",
                        "home w/ VNA|home w/ services",
                        "home with package of care|home with carers"),
    "snf": _p("skilled nursing facility|nursing facility", "SNF|SNF for rehab",
              "step-down bed|intermediate care"),
    "rehab": _p("acute rehabilitation|inpatient rehabilitation", "acute rehab|IRF",
                "rehab unit|community hospital for rehab"),
    "ama": _p("left against medical advice", "left AMA", "self-discharged|took own discharge"),
}
FOLLOW_UP: dict[str, Phrasing] = {
    "pcp": _p("follow up with primary care within 7 days|primary care appointment next week",
              "f/u PCP 1 wk|PCP f/u scheduled", "GP review in 1/52|GP to review"),
    "no_pcp": _p("no primary care physician, referred to clinic|no PCP, clinic referral",
                 "no PCP|no PCP on file", "not registered with a GP|no GP"),
}
COURSE: tuple[Phrasing, ...] = (
    _p("uncomplicated course|improved with treatment", "uncomplicated|improved",
       "straightforward stay|settled on treatment"),
    _p("course complicated by delirium|course complicated by acute kidney injury",
       "c/b delirium|c/b AKI", "stay complicated by delirium|AKI on CKD"),
)
# Prior admissions; {k} is the count (the zero case has its own phrasing).
PRIOR_ADMISSIONS: tuple[Phrasing, ...] = (
    _p("no hospital admissions in the past 6 months", "no recent admits",
       "no admissions in the last year"),
    _p("{k} hospital admissions in the past 6 months", "{k} admits in 6 mo",
       "{k} previous admissions this year, frequent attender"),
)
# What brought the patient in, in the patient's words (history of present illness).
COMPLAINTS: dict[str, Phrasing] = {
    "heart_failure": _p("progressive shortness of breath and leg swelling over a week",
                        "DOE, orthopnea, BLE edema x1 wk", "SOBOE, PND and ankle oedema"),
    "pneumonia": _p("fever and productive cough for three days", "fever, productive cough x3d",
                    "3/7 productive cough, pleuritic pain"),
    "copd_exacerbation": _p("worsening wheeze and increased sputum", "incr wheeze, sputum, SOB",
                            "increased purulent sputum, wheezy"),
    "sepsis": _p("fevers, rigors and new confusion", "fevers, rigors, AMS",
                 "rigors, new confusion, off legs"),
    "gi_bleed": _p("black stools and lightheadedness", "melena, lightheaded",
                   "coffee-ground vomiting, postural dizziness"),
    "stroke": _p("sudden slurred speech and arm weakness", "acute onset dysarthria, R arm weakness",
                 "sudden onset facial droop, FAST +ve"),
    "chest_pain": _p("substernal chest pressure at rest", "substernal CP at rest",
                     "central crushing chest pain at rest"),
    "syncope": _p("a brief loss of consciousness while standing", "brief LOC while standing",
                  "witnessed collapse, quick recovery"),
    "cellulitis": _p("spreading redness and pain of the leg", "spreading erythema, pain of leg",
                     "hot swollen leg, marked up"),
    "elective_surgery": _p("end-stage osteoarthritis failing conservative treatment",
                           "end-stage OA, failed conservative tx", "OA, listed from clinic"),
    "hip_fracture": _p("a fall at home and inability to bear weight",
                       "mechanical fall, unable to WB",
                       "FOOSH at home, shortened rotated leg"),
    "oncology": _p("fever after recent chemotherapy", "fever post chemo, ANC low",
                   "pyrexial day 10 post chemo"),
}

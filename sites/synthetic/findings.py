"""What a clinician elicits and finds: symptoms (review of systems), examination findings and
imaging, each tied to the principal diagnosis so that positives and negations never contradict it.

Every concept has the three phrasings of `sites.synthetic.vocabulary` (plain, short, external).
A symptom is stated as reported or negated (`dyspnea=reported`, `chest_pain=denied`); a finding
or an imaging result as `exam=crackles`, `imaging=consolidation`.
"""

from __future__ import annotations

from sites.synthetic.vocabulary import Phrasing
from sites.synthetic.vocabulary import phrasing as _p

SYMPTOMS: dict[str, Phrasing] = {
    "fever": _p("fevers", "fevers", "pyrexia"),
    "chills": _p("chills", "chills", "rigors"),
    "weight_loss": _p("weight loss", "wt loss", "weight loss"),
    "chest_pain": _p("chest pain", "CP", "chest pain"),
    "palpitations": _p("palpitations", "palpitations", "palpitations"),
    "edema": _p("leg swelling", "LE edema", "ankle oedema"),
    "orthopnea": _p("orthopnea", "orthopnea", "orthopnoea"),
    "dyspnea": _p("shortness of breath", "SOB", "breathlessness"),
    "cough": _p("cough", "cough", "cough"),
    "wheeze": _p("wheezing", "wheeze", "wheeze"),
    "nausea": _p("nausea or vomiting", "N/V", "nausea and vomiting"),
    "abdominal_pain": _p("abdominal pain", "abd pain", "abdominal pain"),
    "melena": _p("black stools", "melena", "melaena"),
    "dysuria": _p("dysuria", "dysuria", "dysuria"),
    "headache": _p("headache", "HA", "headache"),
    "weakness": _p("focal weakness", "focal weakness", "focal neurology"),
    "confusion": _p("confusion", "AMS", "new confusion"),
    "lightheadedness": _p("lightheadedness", "lightheaded", "dizziness"),
    "rash": _p("rash", "rash", "rash"),
    "joint_pain": _p("joint pain", "arthralgia", "joint pain"),
}
ROS_SYSTEMS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("Constitutional", "Const", ("fever", "chills", "weight_loss"), ""),
    ("Eyes", "Eyes", (), "no vision changes"),
    ("ENT", "HEENT", (), "no sore throat or sinus congestion"),
    ("Cardiovascular", "CV", ("chest_pain", "palpitations", "edema", "orthopnea"), ""),
    ("Respiratory", "Resp", ("dyspnea", "cough", "wheeze"), ""),
    ("Gastrointestinal", "GI", ("nausea", "abdominal_pain", "melena"), ""),
    ("Genitourinary", "GU", ("dysuria",), "no hematuria"),
    ("Musculoskeletal", "MSK", ("joint_pain",), "no back pain"),
    ("Skin", "Skin", ("rash",), "no itching"),
    ("Neurological", "Neuro", ("headache", "weakness", "confusion", "lightheadedness"), ""),
    ("Hematologic", "Heme", (), "no easy bruising or bleeding"),
    ("Psychiatric", "Psych", (), "no depressed mood or anxiety"),
)
"""System name (plain, short), its recorded symptoms, and label-free negatives written as text."""
POSITIVE_SYMPTOMS: dict[str, tuple[str, ...]] = {
    "heart_failure": ("dyspnea", "orthopnea", "edema"),
    "pneumonia": ("fever", "cough", "dyspnea"),
    "copd_exacerbation": ("dyspnea", "wheeze", "cough"),
    "sepsis": ("fever", "chills", "confusion", "dysuria"),
    "gi_bleed": ("melena", "lightheadedness"),
    "stroke": ("weakness",),
    "chest_pain": ("chest_pain",),
    "syncope": ("lightheadedness", "palpitations"),
    "cellulitis": ("rash", "fever", "edema"),
    "elective_surgery": ("joint_pain",),
    "hip_fracture": ("joint_pain",),
    "oncology": ("fever", "chills", "nausea"),
}
"""Symptoms the principal diagnosis brings (never written as negated)."""

FINDINGS: dict[str, Phrasing] = {
    "jvd": _p("JVP elevated to the angle of the jaw", "+JVD", "raised JVP"),
    "crackles": _p("bibasilar crackles|crackles at the right base", "bibasilar rales|R basilar "
                   "rales", "bibasal creps|coarse creps right base, bronchial breathing"),
    "wheeze": _p("diffuse expiratory wheezes", "diffuse exp wheeze",
                 "widespread polyphonic wheeze"),
    "edema": _p("2+ pitting edema to the knees", "2+ BLE edema", "pitting oedema to knees"),
    "erythema": _p("warm, tender erythema of the leg with a demarcated border",
                   "LLE erythema, warm, TTP", "hot erythematous leg, marked"),
    "deformity": _p("leg shortened and externally rotated", "L leg shortened, ext rotated",
                    "shortened externally rotated leg"),
    "focal_deficit": _p("right facial droop and right arm drift", "R facial droop, RUE 3/5",
                        "R facial weakness, R arm 3/5, NIHSS 6"),
    "confused": _p("oriented to self only", "A&Ox1", "AMTS 4/10, confused"),
    "pale": _p("pale conjunctivae", "conj pallor", "pale, clammy"),
    "joint": _p("crepitus and reduced range of motion of the affected joint",
                "joint crepitus, decr ROM", "fixed flexion deformity, crepitus"),
    "mucositis": _p("oral mucositis", "mucositis", "sore mouth, mucositis"),
}
DIAGNOSIS_FINDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "heart_failure": (("neck", "jvd"), ("lungs", "crackles"), ("extremities", "edema")),
    "pneumonia": (("lungs", "crackles"),),
    "copd_exacerbation": (("lungs", "wheeze"),),
    "sepsis": (("neuro", "confused"),),
    "gi_bleed": (("heent", "pale"),),
    "stroke": (("neuro", "focal_deficit"),),
    "cellulitis": (("extremities", "erythema"),),
    "elective_surgery": (("extremities", "joint"),),
    "hip_fracture": (("extremities", "deformity"),),
    "oncology": (("heent", "mucositis"),),
}
"""Principal diagnosis -> (exam system, finding) it usually shows."""
EXAM_SYSTEMS: tuple[tuple[str, str, str, str], ...] = (
    ("heent", "HEENT", "normocephalic, moist mucous membranes", "NCAT, MMM"),
    ("neck", "Neck", "supple, no JVD", "supple, no JVD"),
    ("cardiac", "CV", "regular rate and rhythm, no murmurs", "RRR, no m/r/g"),
    ("lungs", "Lungs", "clear to auscultation bilaterally", "CTAB"),
    ("abdomen", "Abd", "soft, nontender, nondistended", "soft, NT/ND"),
    ("extremities", "Ext", "warm, no edema", "WWP, no edema"),
    ("neuro", "Neuro", "alert and oriented, no focal deficits", "A&Ox3, nonfocal"),
    ("skin", "Skin", "no rashes", "no rash"),
)
"""Exam system key, header, normal finding (plain, short): label-free text."""
IMAGING: dict[str, tuple[str, str, Phrasing]] = {
    "heart_failure": ("CXR", "congestion", _p(
        "pulmonary vascular congestion with small bilateral effusions",
        "pulm vasc congestion, small b/l effusions", "upper lobe diversion, bilateral effusions")),
    "pneumonia": ("CXR", "consolidation", _p("right lower lobe consolidation", "RLL infiltrate",
                                             "right basal consolidation")),
    "copd_exacerbation": ("CXR", "hyperinflation", _p(
        "hyperinflation without focal consolidation", "hyperinflated, no focal opacity",
        "hyperexpanded lungs, no consolidation")),
    "stroke": ("CT head", "infarct", _p("no hemorrhage; early left MCA territory hypodensity",
                                        "no ICH, early L MCA hypodensity",
                                        "no bleed, loss of grey-white differentiation L MCA")),
    "hip_fracture": ("XR hip", "fracture", _p("displaced left femoral neck fracture",
                                              "displaced L FN fx", "displaced intracapsular #NOF")),
    "elective_surgery": ("XR", "osteoarthritis", _p(
        "severe osteoarthritis with joint space loss", "severe OA, bone-on-bone",
        "bone-on-bone OA")),
    "syncope": ("CT head", "normal", _p("no acute intracranial abnormality", "no acute IC process",
                                        "no acute intracranial pathology")),
    "cellulitis": ("LE duplex", "normal", _p("no deep vein thrombosis", "neg for DVT",
                                             "no DVT")),
}
"""Principal diagnosis -> (study, finding key, finding); others get a normal chest film."""
NORMAL_CXR = ("CXR", "normal", _p("no acute cardiopulmonary process", "no acute CP process",
                                  "no acute changes"))
DURATIONS: Phrasing = _p("two days|three days|about a week|since yesterday",
                         "x2d|x3d|x1 wk|since yesterday", "2/7|3/7|1/52|since yesterday")
"""How long the complaint has lasted (never `N days`: admission notes state no day counts)."""
ED_TREATMENT: dict[str, str] = {
    "heart_failure": "given IV furosemide",
    "pneumonia": "given ceftriaxone and azithromycin",
    "copd_exacerbation": "given nebulized albuterol-ipratropium and methylprednisolone",
    "sepsis": "given a fluid bolus and broad-spectrum antibiotics after blood cultures",
    "gi_bleed": "started on a pantoprazole infusion and transfused one unit of red cells",
    "stroke": "seen by neurology as a code stroke, outside the window for thrombolysis",
    "chest_pain": "given aspirin and sublingual nitroglycerin",
    "syncope": "placed on telemetry, orthostatic vitals checked",
    "cellulitis": "given IV vancomycin, margins marked",
    "elective_surgery": "seen in pre-op clinic, cleared for surgery",
    "hip_fracture": "given IV morphine and a fascia iliaca block, orthopedics consulted",
    "oncology": "given cefepime within the hour, blood cultures drawn",
}
"""Principal diagnosis -> what the emergency department did (label-free; stays with its dx)."""
HPI_DETAIL: dict[str, tuple[str, ...]] = {
    "heart_failure": (
        "The patient now sleeps on three pillows and wakes up at night short of breath.",
        "Weight is up several pounds despite taking the diuretic as prescribed.",
        "There was some dietary indiscretion with salty food over the past week.",
        "Exercise tolerance has fallen from a few blocks to across the room."),
    "pneumonia": (
        "The cough is productive of yellow-green sputum.",
        "There is pain on the right side of the chest with deep breaths.",
        "A grandchild at home has been sick with a cold.",
        "The patient took acetaminophen at home with little relief."),
    "copd_exacerbation": (
        "The patient has been using the rescue inhaler every two hours without relief.",
        "Sputum has changed from white to green.",
        "The patient could not finish sentences at home.",
        "There has been no chest pain and no leg swelling."),
    "sepsis": (
        "Family noticed the patient was more confused than usual and not eating.",
        "There was burning with urination for a few days beforehand.",
        "The patient had shaking chills at home.",
        "Urine has been dark and foul-smelling."),
    "gi_bleed": (
        "The patient noticed black, tarry stools and felt faint on standing.",
        "There has been regular use of ibuprofen for knee pain.",
        "One episode of dark vomit this morning.",
        "No prior endoscopy on record."),
    "stroke": (
        "Family noticed the speech change at breakfast; the patient was last known well the "
        "night before.",
        "The right hand has been clumsy and the patient dropped a cup.",
        "There was no headache, seizure activity or trauma.",
        "The patient does not take an anticoagulant at home."),
    "chest_pain": (
        "The pressure radiates to the left arm and lasted about twenty minutes.",
        "It came on at rest and eased with rest and time.",
        "There is associated mild shortness of breath but no diaphoresis.",
        "The patient has had similar but milder episodes with exertion."),
    "syncope": (
        "The patient stood up from a chair, felt warm and lightheaded, then lost consciousness "
        "briefly.",
        "A family member witnessed the event; there was no shaking and no incontinence.",
        "The patient returned to baseline within a minute.",
        "There was no chest pain or palpitations beforehand."),
    "cellulitis": (
        "The redness started around a small cut on the shin and has spread despite oral "
        "antibiotics from urgent care.",
        "The leg is warm and painful to walk on.",
        "There has been low-grade fever at home.",
        "No prior episodes of cellulitis."),
    "elective_surgery": (
        "Pain limits walking to less than a block and disturbs sleep.",
        "Conservative treatment with physical therapy, injections and analgesics has failed.",
        "The patient was seen in clinic and consented for arthroplasty.",
        "Preoperative evaluation was completed by the primary care physician."),
    "hip_fracture": (
        "The patient tripped on a rug at home and landed on the left side.",
        "There was no head strike and no loss of consciousness.",
        "The patient was unable to get up and was found by a neighbor.",
        "Pain is severe with any movement of the leg."),
    "oncology": (
        "The patient is receiving chemotherapy, last cycle about ten days ago.",
        "Temperature at home was 101.8 with chills.",
        "There is mild mouth soreness and poor oral intake.",
        "The patient called the oncology clinic and was sent in."),
}
"""Principal diagnosis -> label-free history sentences (durations in words, never `N days`)."""
PLAN_BY_DIAGNOSIS: dict[str, tuple[str, ...]] = {
    "heart_failure": ("IV furosemide twice daily, strict intake and output, daily weights",
                      "fluid restriction, low sodium diet", "check echocardiogram",
                      "continue beta blocker, hold if hypotensive"),
    "pneumonia": ("ceftriaxone and azithromycin", "blood and sputum cultures, urine antigens",
                  "supplemental oxygen to keep saturation above 92 percent", "incentive spirometry"),
    "copd_exacerbation": ("scheduled nebulizers", "prednisone and azithromycin",
                          "titrate oxygen to a saturation of 88 to 92 percent",
                          "smoking cessation counseling"),
    "sepsis": ("broad-spectrum antibiotics, narrow to cultures", "IV fluids, trend lactate",
               "follow blood and urine cultures", "hold antihypertensives"),
    "gi_bleed": ("IV pantoprazole twice daily", "two large-bore IVs, type and cross",
                 "transfuse for hemoglobin below 7", "GI consulted for endoscopy, NPO"),
    "stroke": ("neuro checks every four hours", "permissive hypertension",
               "MRI brain, carotid imaging, echocardiogram", "aspirin, high-intensity statin",
               "speech and swallow evaluation before diet"),
    "chest_pain": ("serial troponins and ECGs", "aspirin, statin", "telemetry",
                   "stress test if troponins remain negative"),
    "syncope": ("telemetry", "orthostatic vitals", "echocardiogram",
                "hold antihypertensives"),
    "cellulitis": ("IV vancomycin", "elevate the leg, mark the borders",
                   "wound care consult", "transition to oral antibiotics when improving"),
    "elective_surgery": ("to the operating room as scheduled", "perioperative antibiotics",
                         "postoperative DVT prophylaxis", "PT/OT after surgery"),
    "hip_fracture": ("orthopedics for fixation", "pain control, fascia iliaca block",
                     "hold anticoagulation before surgery", "geriatrics co-management",
                     "delirium precautions"),
    "oncology": ("cefepime", "blood cultures, neutropenic precautions",
                 "daily CBC with differential", "oncology aware"),
}
"""Principal diagnosis -> items of its plan (label-free)."""
EXTRA_EXAM: tuple[tuple[str, str, str], ...] = (
    ("Lymph", "no cervical or supraclavicular lymphadenopathy", "no LAD"),
    ("Back", "no CVA or spinal tenderness", "no CVAT"),
    ("MSK", "full range of motion of the upper extremities", "FROM UE"),
    ("Psych", "appropriate mood and affect", "nl mood/affect"),
)
"""More exam systems with normal findings only (header, plain, short): written by thorough
styles."""
CONDITION_DETAIL: dict[str, tuple[str, ...]] = {
    "mi": ("s/p PCI to the LAD", "follows with cardiology"),
    "chf": ("last echo with EF 30-35%", "dry weight about 80 kg", "follows with HF clinic"),
    "pvd": ("claudication at one block", "s/p stent to the left SFA"),
    "cvd": ("no residual deficits", "on antiplatelet since"),
    "dementia": ("oriented to self at baseline", "family manages medications"),
    "copd": ("on 2 L home oxygen at night", "last PFTs with severe obstruction"),
    "rheumatic": ("followed by rheumatology", "on DMARD therapy"),
    "peptic_ulcer": ("on PPI", "H. pylori treated in the past"),
    "liver_mild": ("not on treatment", "followed by hepatology"),
    "diabetes": ("last A1c 7.4%", "on oral agents"),
    "diabetes_complicated": ("last A1c 9.1%", "on insulin"),
    "hemiplegia": ("uses a wheelchair for distances", "after a prior stroke"),
    "renal": ("baseline creatinine about 2.5", "followed by nephrology"),
    "cancer": ("on active treatment", "followed by oncology"),
    "liver_severe": ("MELD in the high teens", "prior paracentesis", "on lactulose"),
    "metastatic": ("on palliative chemotherapy", "followed by oncology"),
    "aids": ("on ART", "followed by ID clinic"),
    "htn": ("well controlled at home",), "hld": ("on a statin",), "gerd": ("on PPI",),
    "afib": ("on anticoagulation",), "obesity": ("BMI above 35",),
    "depression": ("stable on medication",), "hypothyroid": ("on replacement",),
    "osa": ("uses CPAP",),
}
"""Documented condition -> label-free detail a thorough problem list adds (`CHF - last echo with
EF 30-35%`)."""

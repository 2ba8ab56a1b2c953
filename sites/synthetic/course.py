"""What a discharge summary tells of the stay: hospital course by diagnosis, complications,
procedures, consultants, follow-up clinics and the patient's instructions.

Sentences follow the principal diagnosis, so a summary never contradicts its admission note. No
sentence says how a stay ended for a patient who died, nor whether anyone came back: those are
labels.
"""

from __future__ import annotations

from sites.synthetic.vocabulary import Phrasing
from sites.synthetic.vocabulary import phrasing as _p

COURSE_BY_DIAGNOSIS: dict[str, tuple[Phrasing, ...]] = {
    "heart_failure": (
        _p("Diuresed with IV furosemide with good urine output, net negative several liters.",
           "Diuresed w/ IV lasix, net neg several L.",
           "Offloaded with IV furosemide, good diuretic response."),
        _p("Transitioned to an oral diuretic once euvolemic; daily weights trended down.",
           "Transitioned to PO lasix once euvolemic, wts trending down.",
           "Switched to oral diuretic once euvolaemic, weights falling."),
        _p("Echocardiogram showed a reduced ejection fraction; medical therapy was optimized.",
           "TTE w/ reduced EF, GDMT optimized.", "Echo: impaired LV function, meds optimised.")),
    "pneumonia": (
        _p("Treated with ceftriaxone and azithromycin with resolution of fevers.",
           "Tx w/ CTX/azithro, afebrile since.", "Treated with IV co-amoxiclav, settling pyrexia."),
        _p("Supplemental oxygen was weaned to room air.", "Weaned to RA.",
           "Weaned off oxygen, saturating on air."),
        _p("Blood cultures remained negative; switched to oral antibiotics to complete the course.",
           "BCx NGTD, switched to PO abx.", "Cultures negative, IV to oral switch.")),
    "copd_exacerbation": (
        _p("Treated with scheduled nebulizers, prednisone and azithromycin.",
           "Tx w/ nebs, pred, azithro.", "Treated with back-to-back nebs, prednisolone, doxy."),
        _p("Work of breathing improved and oxygen was weaned.", "WOB improved, O2 weaned.",
           "Less wheezy, weaned to target saturations.")),
    "sepsis": (
        _p("Source was the urinary tract; urine culture grew E. coli.",
           "Urinary source, UCx E. coli.", "Urinary source, MSU grew coliforms."),
        _p("Blood pressure responded to fluids; antibiotics were narrowed to culture results.",
           "BP fluid responsive, abx narrowed per sensis.",
           "Fluid responsive, antibiotics rationalised per micro."),
        _p("Mental status returned to baseline as the infection was treated.",
           "MS back to baseline.", "Confusion resolved with treatment of sepsis.")),
    "gi_bleed": (
        _p("EGD showed a duodenal ulcer, treated endoscopically.", "EGD: DU, clipped.",
           "OGD: duodenal ulcer, clipped and injected."),
        _p("Hemoglobin remained stable after transfusion; diet advanced.",
           "H/H stable post transfusion, diet advanced.", "Hb stable after transfusion, eating.")),
    "stroke": (
        _p("MRI confirmed an acute left MCA territory infarct.", "MRI: acute L MCA infarct.",
           "MRI: acute left MCA infarct."),
        _p("Started on dual antiplatelet therapy and a high-intensity statin.",
           "Started DAPT, high-intensity statin.", "Started on clopidogrel and high-dose statin."),
        _p("Speech, occupational and physical therapy worked with the patient daily.",
           "SLP/OT/PT daily.", "SALT, OT and physio input daily.")),
    "chest_pain": (
        _p("Serial troponins were flat and ECGs showed no ischemic changes.",
           "Trop flat x3, no ischemic ECG changes.", "Serial troponins flat, no dynamic ECG changes."),
        _p("Stress test showed no inducible ischemia.", "Stress test neg.",
           "Functional testing negative for ischaemia.")),
    "syncope": (
        _p("Telemetry showed no arrhythmia and an echocardiogram was unremarkable.",
           "Tele w/o events, TTE unremarkable.", "No arrhythmia on monitoring, echo normal."),
        _p("Felt to be vasovagal; antihypertensives were adjusted.",
           "Likely vasovagal, BP meds adjusted.", "Likely vasovagal, antihypertensives reduced.")),
    "cellulitis": (
        _p("Erythema receded within the marked borders on IV vancomycin.",
           "Erythema receding w/ IV vanc.", "Erythema receding on IV flucloxacillin."),
        _p("Transitioned to oral cephalexin to complete the course.", "Transitioned to PO keflex.",
           "IV to oral switch to complete the course.")),
    "elective_surgery": (
        _p("Underwent the planned arthroplasty without intraoperative complications.",
           "Underwent planned arthroplasty, no intra-op issues.",
           "Underwent planned joint replacement, uneventful theatre."),
        _p("Pain was controlled with a multimodal regimen; physical therapy began on the first "
           "postoperative day.", "Pain controlled, PT from POD1.",
           "Analgesia adequate, physio from day 1 post-op.")),
    "hip_fracture": (
        _p("Underwent hemiarthroplasty the day after admission.", "S/p hemiarthroplasty.",
           "Hemiarthroplasty on next trauma list."),
        _p("Weight bearing as tolerated after surgery; geriatrics co-managed.",
           "WBAT post-op, geri co-managed.", "FWB post-op, orthogeriatric review.")),
    "oncology": (
        _p("Neutropenic fever treated with cefepime; cultures remained negative.",
           "FN tx w/ cefepime, cx neg.", "Neutropenic sepsis pathway, cultures negative."),
        _p("Counts recovered and fevers resolved; oncology followed.", "Counts recovered, onc f/u.",
           "Neutrophils recovered, apyrexial, oncology aware.")),
}
COMPLICATIONS: tuple[Phrasing, ...] = (
    _p("The course was complicated by acute kidney injury, which improved with fluids.",
       "c/b AKI, improved w/ IVF.", "Stay complicated by AKI on CKD, improved with fluids."),
    _p("The course was complicated by delirium, managed with reorientation and sleep hygiene.",
       "c/b delirium, managed nonpharmacologically.", "Stay complicated by delirium."),
    _p("The course was complicated by hospital-acquired pneumonia treated with cefepime.",
       "c/b HAP, tx w/ cefepime.", "Stay complicated by hospital-acquired pneumonia."),
)
"""A complicated stay (`course=complicated`)."""
UNCOMPLICATED: Phrasing = _p("The course was otherwise uncomplicated.", "Otherwise uncomplicated.",
                             "Otherwise straightforward stay.")
PROCEDURES: dict[str, Phrasing] = {
    "heart_failure": _p("transthoracic echocardiogram", "TTE", "echocardiogram"),
    "gi_bleed": _p("EGD with clipping of a duodenal ulcer", "EGD w/ clip", "OGD with clips"),
    "stroke": _p("MRI brain", "MRI brain", "MRI head"),
    "chest_pain": _p("exercise stress test", "ETT", "exercise tolerance test"),
    "syncope": _p("transthoracic echocardiogram", "TTE", "echocardiogram"),
    "elective_surgery": _p("total knee arthroplasty|total hip arthroplasty", "TKA|THA",
                           "TKR|THR"),
    "hip_fracture": _p("hip hemiarthroplasty", "hemiarthroplasty", "hemiarthroplasty"),
}
"""Principal diagnosis -> its procedure (`procedure=<diagnosis>`); others: none."""
CONSULTANTS: dict[str, str] = {
    "heart_failure": "cardiology", "pneumonia": "infectious disease", "copd_exacerbation":
    "pulmonology", "sepsis": "infectious disease", "gi_bleed": "gastroenterology", "stroke":
    "neurology", "chest_pain": "cardiology", "syncope": "cardiology", "cellulitis": "wound care",
    "elective_surgery": "orthopedics", "hip_fracture": "orthopedics", "oncology": "oncology",
}
CLINICS: dict[str, str] = {
    "heart_failure": "heart failure clinic in one to two weeks",
    "pneumonia": "repeat chest film in six weeks",
    "copd_exacerbation": "pulmonary clinic in four weeks",
    "sepsis": "urine culture results to be followed by the primary team",
    "gi_bleed": "GI clinic in four weeks; repeat EGD in eight weeks",
    "stroke": "stroke clinic in four weeks",
    "chest_pain": "cardiology clinic in two weeks",
    "syncope": "cardiology clinic for an ambulatory monitor",
    "cellulitis": "wound check at the primary care office",
    "elective_surgery": "orthopedic clinic in two weeks for wound check and staple removal",
    "hip_fracture": "orthopedic clinic in two weeks, staples out at that visit",
    "oncology": "oncology clinic before the next cycle",
}
INSTRUCTIONS: dict[str, str] = {
    "heart_failure": "Weigh yourself every morning and call your doctor if your weight goes up "
                     "by more than three pounds in a day or five pounds in a week. Limit salt and "
                     "fluids as we discussed.",
    "pneumonia": "Finish all of your antibiotics even if you feel better. Use your incentive "
                 "spirometer several times an hour while awake.",
    "copd_exacerbation": "Take the prednisone exactly as prescribed and use your inhalers every "
                         "day. Avoid smoke and call if your breathing gets worse.",
    "sepsis": "Finish your antibiotics, drink plenty of fluids, and check your temperature if you "
              "feel unwell.",
    "gi_bleed": "Avoid ibuprofen, naproxen and aspirin unless your doctor tells you otherwise. "
                "Call right away if you see black or bloody stools.",
    "stroke": "Take your blood thinners every day. Call 911 if you notice new weakness, numbness, "
              "trouble speaking or a drooping face.",
    "chest_pain": "Take aspirin every day. Call 911 for chest pain that lasts more than a few "
                  "minutes or comes with sweating or shortness of breath.",
    "syncope": "Stand up slowly, drink plenty of fluids, and do not drive until cleared by your "
               "doctor.",
    "cellulitis": "Keep the leg raised when sitting, finish the antibiotics, and call if the "
                  "redness spreads beyond the marked line.",
    "elective_surgery": "Keep the incision clean and dry. Use the walker, do your exercises "
                        "three times a day, and take the blood thinner injections as shown.",
    "hip_fracture": "Weight bearing as tolerated with the walker. Take the blood thinner "
                    "injections as shown, and keep the incision clean and dry.",
    "oncology": "Check your temperature twice a day and call the oncology clinic right away for "
                "a temperature of 100.4 or higher.",
}
GENERAL_INSTRUCTIONS = (
    "It was a pleasure taking care of you. You were in the hospital because of the problem "
    "described above. Please take your medications as listed and keep your follow-up "
    "appointments. Return to the emergency department or call your doctor if you develop fever, "
    "chest pain, trouble breathing, confusion, or any symptom that worries you."
)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "heart_failure": ("daily weights; call for a gain of more than three pounds",
                      "titrate diuretic to weight"),
    "pneumonia": ("repeat chest film in six weeks to document resolution",),
    "copd_exacerbation": ("complete the steroid course", "consider pulmonary rehabilitation"),
    "sepsis": ("follow final culture sensitivities", "restart held antihypertensives when "
               "blood pressure allows"),
    "gi_bleed": ("repeat CBC within one week", "H. pylori result pending",
                 "avoid NSAIDs"),
    "stroke": ("dual antiplatelet therapy for three weeks, then single agent",
               "outpatient speech therapy"),
    "chest_pain": ("outpatient lipid panel",),
    "syncope": ("ambulatory cardiac monitor", "no driving until cleared"),
    "cellulitis": ("wound check", "complete the antibiotic course"),
    "elective_surgery": ("staple removal at the two-week visit", "DVT prophylaxis for four "
                         "weeks"),
    "hip_fracture": ("staple removal at the two-week visit", "DVT prophylaxis for four weeks",
                     "bone health evaluation"),
    "oncology": ("next chemotherapy cycle per oncology", "repeat CBC before the next cycle"),
}
"""Principal diagnosis -> transitional issues for the next clinician (label-free)."""
ACTIVITY = (
    "Diet: heart healthy, low sodium. Activity: as tolerated, increase slowly.",
    "Diet: regular. Activity: walk several times a day; no heavy lifting for now.",
    "Diet: as tolerated. Activity: with assistance as taught by physical therapy.",
)
DAILY_CARE = (
    "Remained on telemetry without events.", "Electrolytes were repleted as needed.",
    "The pain regimen was adjusted.", "Ambulated in the hallway with nursing.",
    "A bowel regimen was added.", "Sleep improved with melatonin.",
    "Diet was advanced as tolerated.", "A family meeting reviewed the plan of care.",
    "Home medications were resumed as appropriate.", "Blood sugars were controlled on a "
    "sliding scale.", "Intake and output were followed closely.",
    "Lines were removed before discharge.",
)
"""Label-free sentences of a stay's days: a longer stay has more of them."""
PROCEDURE_DETAIL: dict[str, str] = {
    "gi_bleed": "Findings: a clean-based duodenal ulcer with a visible vessel, two clips placed, "
                "epinephrine injected. No further bleeding at the end of the procedure.",
    "elective_surgery": "Anesthesia: spinal with sedation. Estimated blood loss 250 mL. "
                        "Implants: cemented components. Drains: none. Intraoperative "
                        "complications: none.",
    "hip_fracture": "Anesthesia: spinal. Estimated blood loss 300 mL. Implant: cemented "
                    "hemiarthroplasty. Intraoperative complications: none.",
    "stroke": "Diffusion restriction in the left MCA territory, no hemorrhagic conversion.",
    "heart_failure": "Findings: dilated left ventricle, moderately reduced systolic function, "
                     "moderate mitral regurgitation.",
    "syncope": "Findings: normal biventricular function, no significant valve disease.",
    "chest_pain": "Findings: achieved target heart rate, no ischemic changes, no symptoms.",
}
"""Principal diagnosis -> what the procedure found (label-free)."""

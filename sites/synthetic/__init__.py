"""A generator of multi-site synthetic EHR encounters for the five ReMedE tasks.

`profiles` says how hospitals differ (covariate, label, concept, coding and style shift knobs),
`patients` draws latent factors, structured facts, labels and their true probabilities, `charlson`
handles comorbidities and coding. `chart` draws one chart per patient (problem list, medications,
social and functional history), `encounter_view` what the clinicians see of one stay (acuity,
vitals, `labs`, symptoms and `findings`), and `notes` writes the admission H&P (`admission_note`,
`hpi`) and the discharge summary (`discharge_note`, `course`) in a site's style (`styles`,
`vocabulary`, `drugs`, `wording`), recording what each note states where (`note_builder`,
`stated_facts`). `generate` puts a site's table together.
"""

from sites.synthetic.generate import generate_consortium, generate_site, site_seed
from sites.synthetic.profiles import PROFILES, SiteProfile

__all__ = ["PROFILES", "SiteProfile", "generate_consortium", "generate_site", "site_seed"]

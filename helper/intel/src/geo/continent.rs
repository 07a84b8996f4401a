//! Countries and continents: the two-letter code type and the static country → continent
//! table that continent rules (`- EU`, `+ OC`) need. Pure data, no I/O.
//!
//! The table holds every ISO 3166-1 alpha-2 code plus the codes geo databases use beside them
//! (XK Kosovo; AC and TA, exceptionally reserved). Continents follow the seven-continent
//! convention of GeoNames and MaxMind (which DB-IP follows): Russia is in Europe; Turkey and
//! the Caucasus states (AM, AZ, GE) are in Asia; Cyprus is in Europe;
//! Timor-Leste and the US Minor Outlying Islands are in Oceania. The list was checked against
//! the `countries-list` 3.4.1 data set, which differs only in putting Russia in Asia.

use std::fmt;

/// A country (or territory) by its ISO 3166-1 alpha-2 code, in upper case.
///
/// Two bytes, `Copy`: it is what geo lookups return and what country rules compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// A known country code (any case), as a rule would name it: `"DE"`, `"de"`.
    ///
    /// Returns `None` for anything that is not two ASCII letters or not in the table, so a
    /// typo in a rule is rejected rather than silently never matching.
    pub fn parse(code: &str) -> Option<Self> {
        let country = Self::from_letters(code.as_bytes())?;
        country.continent().map(|_| country)
    }

    /// Any two ASCII letters, upper-cased, whether or not the table knows them. Loaders use
    /// it: a database may carry a code newer than this build's table.
    pub(crate) fn from_letters(code: &[u8]) -> Option<Self> {
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // Always two ASCII letters (checked in `from_letters`), so never the fallback.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The code's two bytes.
    pub fn code(self) -> [u8; 2] {
        self.0
    }

    /// The continent the country belongs to; `None` for a code the table does not know.
    pub fn continent(self) -> Option<Continent> {
        let [a, b] = self.0;
        let slot = usize::from(a.wrapping_sub(b'A')) * 26 + usize::from(b.wrapping_sub(b'A'));
        match CONTINENT_OF.get(slot).copied().unwrap_or(0) {
            0 => None,
            n => Continent::ALL.get(usize::from(n) - 1).copied(),
        }
    }

    /// The packed form the range tables store (never 0).
    pub(crate) fn to_slot(self) -> u16 {
        u16::from_be_bytes(self.0)
    }

    /// The inverse of [`Country::to_slot`].
    pub(crate) fn from_slot(slot: u16) -> Self {
        Self(slot.to_be_bytes())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the seven continents, by the two-letter codes geo databases use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    /// `AF`
    Africa,
    /// `AN`
    Antarctica,
    /// `AS`
    Asia,
    /// `EU`
    Europe,
    /// `NA`
    NorthAmerica,
    /// `OC`
    Oceania,
    /// `SA`
    SouthAmerica,
}

impl Continent {
    /// Every continent, in code order.
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// The two-letter code: `"AF"`, `"AN"`, `"AS"`, `"EU"`, `"NA"`, `"OC"`, `"SA"`.
    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// The English name, for the UI.
    pub fn name(self) -> &'static str {
        match self {
            Continent::Africa => "Africa",
            Continent::Antarctica => "Antarctica",
            Continent::Asia => "Asia",
            Continent::Europe => "Europe",
            Continent::NorthAmerica => "North America",
            Continent::Oceania => "Oceania",
            Continent::SouthAmerica => "South America",
        }
    }

    /// A continent by its code (any case). Note that `NA` is also Namibia's country code and
    /// `AS` American Samoa's: the rule syntax decides which one a token means.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(code))
    }

    /// The countries of this continent, in code order.
    pub fn countries(self) -> impl Iterator<Item = Country> {
        COUNTRIES
            .iter()
            .filter(move |(_, c)| *c == self)
            .map(|(code, _)| Country(*code))
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

use Continent::{Africa, Antarctica, Asia, Europe, NorthAmerica, Oceania, SouthAmerica};

/// Every code the table knows, sorted, with its continent.
pub(crate) const COUNTRIES: [([u8; 2], Continent); 252] = [
    (*b"AC", Africa),
    (*b"AD", Europe),
    (*b"AE", Asia),
    (*b"AF", Asia),
    (*b"AG", NorthAmerica),
    (*b"AI", NorthAmerica),
    (*b"AL", Europe),
    (*b"AM", Asia),
    (*b"AO", Africa),
    (*b"AQ", Antarctica),
    (*b"AR", SouthAmerica),
    (*b"AS", Oceania),
    (*b"AT", Europe),
    (*b"AU", Oceania),
    (*b"AW", NorthAmerica),
    (*b"AX", Europe),
    (*b"AZ", Asia),
    (*b"BA", Europe),
    (*b"BB", NorthAmerica),
    (*b"BD", Asia),
    (*b"BE", Europe),
    (*b"BF", Africa),
    (*b"BG", Europe),
    (*b"BH", Asia),
    (*b"BI", Africa),
    (*b"BJ", Africa),
    (*b"BL", NorthAmerica),
    (*b"BM", NorthAmerica),
    (*b"BN", Asia),
    (*b"BO", SouthAmerica),
    (*b"BQ", NorthAmerica),
    (*b"BR", SouthAmerica),
    (*b"BS", NorthAmerica),
    (*b"BT", Asia),
    (*b"BV", Antarctica),
    (*b"BW", Africa),
    (*b"BY", Europe),
    (*b"BZ", NorthAmerica),
    (*b"CA", NorthAmerica),
    (*b"CC", Asia),
    (*b"CD", Africa),
    (*b"CF", Africa),
    (*b"CG", Africa),
    (*b"CH", Europe),
    (*b"CI", Africa),
    (*b"CK", Oceania),
    (*b"CL", SouthAmerica),
    (*b"CM", Africa),
    (*b"CN", Asia),
    (*b"CO", SouthAmerica),
    (*b"CR", NorthAmerica),
    (*b"CU", NorthAmerica),
    (*b"CV", Africa),
    (*b"CW", NorthAmerica),
    (*b"CX", Asia),
    (*b"CY", Europe),
    (*b"CZ", Europe),
    (*b"DE", Europe),
    (*b"DJ", Africa),
    (*b"DK", Europe),
    (*b"DM", NorthAmerica),
    (*b"DO", NorthAmerica),
    (*b"DZ", Africa),
    (*b"EC", SouthAmerica),
    (*b"EE", Europe),
    (*b"EG", Africa),
    (*b"EH", Africa),
    (*b"ER", Africa),
    (*b"ES", Europe),
    (*b"ET", Africa),
    (*b"FI", Europe),
    (*b"FJ", Oceania),
    (*b"FK", SouthAmerica),
    (*b"FM", Oceania),
    (*b"FO", Europe),
    (*b"FR", Europe),
    (*b"GA", Africa),
    (*b"GB", Europe),
    (*b"GD", NorthAmerica),
    (*b"GE", Asia),
    (*b"GF", SouthAmerica),
    (*b"GG", Europe),
    (*b"GH", Africa),
    (*b"GI", Europe),
    (*b"GL", NorthAmerica),
    (*b"GM", Africa),
    (*b"GN", Africa),
    (*b"GP", NorthAmerica),
    (*b"GQ", Africa),
    (*b"GR", Europe),
    (*b"GS", Antarctica),
    (*b"GT", NorthAmerica),
    (*b"GU", Oceania),
    (*b"GW", Africa),
    (*b"GY", SouthAmerica),
    (*b"HK", Asia),
    (*b"HM", Antarctica),
    (*b"HN", NorthAmerica),
    (*b"HR", Europe),
    (*b"HT", NorthAmerica),
    (*b"HU", Europe),
    (*b"ID", Asia),
    (*b"IE", Europe),
    (*b"IL", Asia),
    (*b"IM", Europe),
    (*b"IN", Asia),
    (*b"IO", Asia),
    (*b"IQ", Asia),
    (*b"IR", Asia),
    (*b"IS", Europe),
    (*b"IT", Europe),
    (*b"JE", Europe),
    (*b"JM", NorthAmerica),
    (*b"JO", Asia),
    (*b"JP", Asia),
    (*b"KE", Africa),
    (*b"KG", Asia),
    (*b"KH", Asia),
    (*b"KI", Oceania),
    (*b"KM", Africa),
    (*b"KN", NorthAmerica),
    (*b"KP", Asia),
    (*b"KR", Asia),
    (*b"KW", Asia),
    (*b"KY", NorthAmerica),
    (*b"KZ", Asia),
    (*b"LA", Asia),
    (*b"LB", Asia),
    (*b"LC", NorthAmerica),
    (*b"LI", Europe),
    (*b"LK", Asia),
    (*b"LR", Africa),
    (*b"LS", Africa),
    (*b"LT", Europe),
    (*b"LU", Europe),
    (*b"LV", Europe),
    (*b"LY", Africa),
    (*b"MA", Africa),
    (*b"MC", Europe),
    (*b"MD", Europe),
    (*b"ME", Europe),
    (*b"MF", NorthAmerica),
    (*b"MG", Africa),
    (*b"MH", Oceania),
    (*b"MK", Europe),
    (*b"ML", Africa),
    (*b"MM", Asia),
    (*b"MN", Asia),
    (*b"MO", Asia),
    (*b"MP", Oceania),
    (*b"MQ", NorthAmerica),
    (*b"MR", Africa),
    (*b"MS", NorthAmerica),
    (*b"MT", Europe),
    (*b"MU", Africa),
    (*b"MV", Asia),
    (*b"MW", Africa),
    (*b"MX", NorthAmerica),
    (*b"MY", Asia),
    (*b"MZ", Africa),
    (*b"NA", Africa),
    (*b"NC", Oceania),
    (*b"NE", Africa),
    (*b"NF", Oceania),
    (*b"NG", Africa),
    (*b"NI", NorthAmerica),
    (*b"NL", Europe),
    (*b"NO", Europe),
    (*b"NP", Asia),
    (*b"NR", Oceania),
    (*b"NU", Oceania),
    (*b"NZ", Oceania),
    (*b"OM", Asia),
    (*b"PA", NorthAmerica),
    (*b"PE", SouthAmerica),
    (*b"PF", Oceania),
    (*b"PG", Oceania),
    (*b"PH", Asia),
    (*b"PK", Asia),
    (*b"PL", Europe),
    (*b"PM", NorthAmerica),
    (*b"PN", Oceania),
    (*b"PR", NorthAmerica),
    (*b"PS", Asia),
    (*b"PT", Europe),
    (*b"PW", Oceania),
    (*b"PY", SouthAmerica),
    (*b"QA", Asia),
    (*b"RE", Africa),
    (*b"RO", Europe),
    (*b"RS", Europe),
    (*b"RU", Europe),
    (*b"RW", Africa),
    (*b"SA", Asia),
    (*b"SB", Oceania),
    (*b"SC", Africa),
    (*b"SD", Africa),
    (*b"SE", Europe),
    (*b"SG", Asia),
    (*b"SH", Africa),
    (*b"SI", Europe),
    (*b"SJ", Europe),
    (*b"SK", Europe),
    (*b"SL", Africa),
    (*b"SM", Europe),
    (*b"SN", Africa),
    (*b"SO", Africa),
    (*b"SR", SouthAmerica),
    (*b"SS", Africa),
    (*b"ST", Africa),
    (*b"SV", NorthAmerica),
    (*b"SX", NorthAmerica),
    (*b"SY", Asia),
    (*b"SZ", Africa),
    (*b"TA", Africa),
    (*b"TC", NorthAmerica),
    (*b"TD", Africa),
    (*b"TF", Antarctica),
    (*b"TG", Africa),
    (*b"TH", Asia),
    (*b"TJ", Asia),
    (*b"TK", Oceania),
    (*b"TL", Oceania),
    (*b"TM", Asia),
    (*b"TN", Africa),
    (*b"TO", Oceania),
    (*b"TR", Asia),
    (*b"TT", NorthAmerica),
    (*b"TV", Oceania),
    (*b"TW", Asia),
    (*b"TZ", Africa),
    (*b"UA", Europe),
    (*b"UG", Africa),
    (*b"UM", Oceania),
    (*b"US", NorthAmerica),
    (*b"UY", SouthAmerica),
    (*b"UZ", Asia),
    (*b"VA", Europe),
    (*b"VC", NorthAmerica),
    (*b"VE", SouthAmerica),
    (*b"VG", NorthAmerica),
    (*b"VI", NorthAmerica),
    (*b"VN", Asia),
    (*b"VU", Oceania),
    (*b"WF", Oceania),
    (*b"WS", Oceania),
    (*b"XK", Europe),
    (*b"YE", Asia),
    (*b"YT", Africa),
    (*b"ZA", Africa),
    (*b"ZM", Africa),
    (*b"ZW", Africa),
];

/// `COUNTRIES` as a 26 × 26 array indexed by the two letters: 0 for unknown, else the
/// continent's position in `Continent::ALL` plus one. Built at compile time, so a lookup is
/// one load.
#[expect(
    clippy::indexing_slicing,
    reason = "a const block: an out-of-range index fails the build, never a run"
)]
const CONTINENT_OF: [u8; 676] = {
    let mut table = [0u8; 676];
    let mut i = 0;
    while i < COUNTRIES.len() {
        let ([a, b], continent) = COUNTRIES[i];
        let slot = (a - b'A') as usize * 26 + (b - b'A') as usize;
        table[slot] = continent as u8 + 1;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_upper_case() {
        for pair in COUNTRIES.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:?} before {:?}",
                pair[0].0,
                pair[1].0
            );
        }
        for (code, _) in COUNTRIES {
            assert!(code.iter().all(u8::is_ascii_uppercase));
        }
    }

    #[test]
    fn known_countries_have_their_continent() {
        let cases = [
            ("DE", Europe),
            ("de", Europe),
            ("RU", Europe),
            ("US", NorthAmerica),
            ("BR", SouthAmerica),
            ("JP", Asia),
            ("TR", Asia),
            ("AU", Oceania),
            ("ZA", Africa),
            ("AQ", Antarctica),
            ("XK", Europe),
        ];
        for (code, continent) in cases {
            let country = Country::parse(code).expect(code);
            assert_eq!(country.continent(), Some(continent), "{code}");
            assert_eq!(country.as_str(), code.to_ascii_uppercase());
        }
    }

    #[test]
    fn unknown_or_malformed_codes_are_refused() {
        for code in ["", "D", "DEU", "ZZ", "XX", "1A", "é", "EU"] {
            assert_eq!(Country::parse(code), None, "{code:?}");
        }
        assert!(Country::from_letters(b"ZZ").is_some_and(|c| c.continent().is_none()));
    }

    #[test]
    fn continents_parse_and_partition_the_table() {
        let mut total = 0;
        for continent in Continent::ALL {
            assert_eq!(Continent::parse(continent.code()), Some(continent));
            assert_eq!(
                Continent::parse(&continent.code().to_ascii_lowercase()),
                Some(continent)
            );
            total += continent.countries().count();
        }
        assert_eq!(total, COUNTRIES.len());
        assert_eq!(Continent::parse("XX"), None);
    }

    #[test]
    fn slot_round_trips() {
        let de = Country::parse("DE").expect("DE");
        assert_ne!(de.to_slot(), 0);
        assert_eq!(Country::from_slot(de.to_slot()), de);
    }
}

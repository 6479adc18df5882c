//! Profiles: each account's display name, about text and photo (a media id), who may see them
//! (everyone / my contacts / nobody, the presence privacy's rule), and the `ProfileChange`
//! inbox items a change puts in the inboxes of those who may see it.
//!
//! Who is told: the owner's other devices (always, with everything) and the devices of the
//! accounts in the owner's contact list that it has not blocked, unless the profile is and was
//! hidden from them (`nobody`). A change that hides the profile tells them with an empty one,
//! so their copy goes away.
//!
//! A photo holds a media reference (image and thumbnail, under the account's
//! `profile_photo_ref_id`, which never expires) for as long as the profile names it: taken
//! before the profile is stored, released after it no longer names it, so the media sweep never
//! collects a photo in use. Knows the kernel, the directory, blocks and the stores it reads;
//! nothing of sessions or HTTP.

use std::collections::HashSet;
use std::sync::Arc;

use iris_proto::http::{ProfilePrivacy, ProfileUpdate, ProfileView};
use iris_proto::pb::{self, inbox_item, MediaKind};
use iris_store::{profile_photo_ref_id, AccountId, AppendRequest, DeviceAddr, MediaId, Profile, Store};

use crate::blocks::Blocks;
use crate::clock::Clock;
use crate::config::ProfilesConfig;
use crate::contacts::Contacts;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, Fanout};
use crate::ids::IdGenerator;
use crate::metrics::Metrics;
use crate::presence::Privacy;

/// Inbox entries per append when a change fans out to many contacts' devices.
const ENTRIES_PER_APPEND_MAX: usize = 4096;

/// The parts [`Profiles`] needs.
pub struct ProfilesDeps {
    /// Profiles, contacts, media records.
    pub store: Arc<dyn Store>,
    /// Accounts and their devices.
    pub directory: Arc<Directory>,
    /// Who blocked whom.
    pub blocks: Arc<Blocks>,
    /// The discovery limit a read of a stranger's profile counts against.
    pub contacts: Arc<Contacts>,
    /// Where the change notices go.
    pub fanout: Fanout,
    /// Server ids of the notices.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Counters of updates and refusals.
    pub metrics: Arc<Metrics>,
    /// Field bounds.
    pub config: ProfilesConfig,
}

/// The profile service.
pub struct Profiles {
    d: ProfilesDeps,
}

fn privacy_of(p: ProfilePrivacy) -> Privacy {
    match p {
        ProfilePrivacy::Everyone => Privacy::Everyone,
        ProfilePrivacy::Contacts => Privacy::Contacts,
        ProfilePrivacy::Nobody => Privacy::Nobody,
    }
}

fn wire_privacy(p: Privacy) -> ProfilePrivacy {
    match p {
        Privacy::Everyone => ProfilePrivacy::Everyone,
        Privacy::Contacts => ProfilePrivacy::Contacts,
        Privacy::Nobody => ProfilePrivacy::Nobody,
    }
}

impl Profiles {
    /// The service over `deps`.
    pub fn new(deps: ProfilesDeps) -> Self {
        Self { d: deps }
    }

    /// Changes `me`'s account's profile (absent fields stay), stores it, then tells those who
    /// may see it. Returns the profile as its owner sees it.
    pub async fn update(&self, me: DeviceAddr, update: ProfileUpdate) -> Result<ProfileView, ServiceError> {
        let checked = self.check(&update).await;
        if checked.is_err() {
            self.d.metrics.profiles_rejected.inc();
        }
        checked?;
        let owner = me.account;
        let old = self.d.store.profile(owner).await?.unwrap_or_default();
        let mut new = old.clone();
        if let Some(name) = update.display_name {
            new.display_name = name;
        }
        if let Some(about) = update.about {
            new.about = about;
        }
        if let Some(photo) = update.photo_media_id {
            new.photo_media_id = photo;
        }
        if let Some(privacy) = update.privacy {
            new.privacy = privacy_of(privacy).code();
        }
        new.updated_at_ms = self.d.clock.now_ms();
        let (old_photo, new_photo) =
            (self.photo_refs(&old.photo_media_id).await?, self.photo_refs(&new.photo_media_id).await?);
        let ref_id = profile_photo_ref_id(owner);
        if !new_photo.is_empty() {
            // Held before the profile names it, so the sweep never sees it unreferenced (taken
            // again when it stays: idempotent, and it mends a photo set before photos held one).
            let missing = self.d.store.add_media_refs(ref_id, owner, &new_photo).await?;
            if !missing.is_empty() {
                self.d.metrics.profiles_rejected.inc();
                return Err(ServiceError::ProfileInvalid("the photo is no longer stored; upload it again".into()));
            }
        }
        self.d.store.set_profile(owner, &new).await?;
        if new_photo != old_photo && !old_photo.is_empty() {
            // Released after: a crash in between keeps the old photo, never loses the new one.
            let released: Vec<MediaId> = old_photo.into_iter().filter(|id| !new_photo.contains(id)).collect();
            self.d.store.remove_media_refs(ref_id, owner, &released).await?;
        }
        self.d.metrics.profiles_updates.inc();
        self.announce(me, &old, &new).await?;
        Ok(self.owner_view(owner, &new))
    }

    /// `target`'s profile as `viewer` may see it (see the module doc). Reading a profile other
    /// than one's own or a contact's, found or not, is one contact-discovery request: account
    /// ids are sequential, and without the limit any device could walk them all.
    pub async fn view(&self, viewer: AccountId, target: AccountId) -> Result<ProfileView, ServiceError> {
        self.d.contacts.charge_unless_known(viewer, Some(target)).await?;
        if self.d.directory.by_id(target).await?.is_none() {
            return Err(ServiceError::NotFound("account"));
        }
        let profile = self.d.store.profile(target).await?.unwrap_or_default();
        if viewer == target {
            return Ok(self.owner_view(target, &profile));
        }
        if !self.visible_to(target, &profile, viewer).await? {
            return Ok(ProfileView { account_id: target, ..ProfileView::default() });
        }
        Ok(ProfileView { privacy: None, ..self.owner_view(target, &profile) })
    }

    async fn visible_to(&self, owner: AccountId, profile: &Profile, viewer: AccountId) -> Result<bool, ServiceError> {
        if self.d.blocks.is_blocked(owner, viewer).await? {
            return Ok(false);
        }
        Ok(match Privacy::from_code(profile.privacy) {
            Privacy::Everyone => true,
            Privacy::Contacts => self.d.store.is_contact(owner, viewer).await?,
            Privacy::Nobody => false,
        })
    }

    fn owner_view(&self, owner: AccountId, p: &Profile) -> ProfileView {
        ProfileView {
            account_id: owner,
            visible: true,
            display_name: p.display_name.clone(),
            about: p.about.clone(),
            photo_media_id: p.photo_media_id.clone(),
            privacy: Some(wire_privacy(Privacy::from_code(p.privacy))),
            updated_at_ms: p.updated_at_ms,
        }
    }

    /// The blobs a profile photo keeps: the image and its server-made thumbnail (none when the
    /// profile has no photo, or its blob is gone).
    async fn photo_refs(&self, photo: &str) -> Result<Vec<MediaId>, ServiceError> {
        let mut id = [0u8; 32];
        if photo.is_empty() || hex::decode_to_slice(photo, &mut id).is_err() {
            return Ok(Vec::new());
        }
        let thumbnail = self.d.store.blob(id).await?.and_then(|b| b.thumbnail);
        Ok(std::iter::once(id).chain(thumbnail).collect())
    }

    /// Bounds and the photo: a stored image.
    async fn check(&self, u: &ProfileUpdate) -> Result<(), ServiceError> {
        let c = &self.d.config;
        let bounded = |what: &str, s: &Option<String>, max: usize| match s {
            Some(s) if s.chars().count() > max => {
                Err(ServiceError::ProfileInvalid(format!("{what} is longer than {max} characters")))
            }
            _ => Ok(()),
        };
        bounded("display_name", &u.display_name, c.display_name_chars_max)?;
        bounded("about", &u.about, c.about_chars_max)?;
        if u.display_name.as_deref().is_some_and(|n| n.chars().any(char::is_control)) {
            return Err(ServiceError::ProfileInvalid("display_name contains control characters".into()));
        }
        let Some(photo) = u.photo_media_id.as_deref().filter(|p| !p.is_empty()) else { return Ok(()) };
        let mut id = [0u8; 32];
        let bad = || ServiceError::ProfileInvalid(format!("photo_media_id {photo:?} is not an uploaded image"));
        if photo.len() != 64 || photo.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        hex::decode_to_slice(photo, &mut id).map_err(|_| bad())?;
        match self.d.store.blob(id).await? {
            Some(blob) if blob.kind == MediaKind::Image as u8 => Ok(()),
            _ => Err(bad()),
        }
    }

    /// Puts the change in the inboxes of those who may see it (module doc).
    async fn announce(&self, me: DeviceAddr, old: &Profile, new: &Profile) -> Result<(), ServiceError> {
        let owner = me.account;
        let Some(view) = self.d.directory.by_id(owner).await? else { return Ok(()) };
        let change = |p: &Profile| pb::ProfileChange {
            account_id: owner,
            phone: view.phone.clone(),
            display_name: p.display_name.clone(),
            about: p.about.clone(),
            photo_media_id: p.photo_media_id.clone(),
        };
        let own: Vec<DeviceAddr> =
            view.devices.iter().filter(|&&d| d != me.device).map(|&d| DeviceAddr::new(owner, d)).collect();
        self.append(own, change(new)).await?;
        let (was_hidden, hidden) =
            (Privacy::from_code(old.privacy) == Privacy::Nobody, Privacy::from_code(new.privacy) == Privacy::Nobody);
        if was_hidden && hidden {
            return Ok(());
        }
        let blocked: HashSet<AccountId> = self.d.store.blocked_by(owner).await?.into_iter().collect();
        let contacts: Vec<AccountId> =
            self.d.store.contacts(owner).await?.into_iter().filter(|c| *c != owner && !blocked.contains(c)).collect();
        let devices = self.d.directory.devices_of(&contacts).await?;
        let body = if hidden { change(&Profile::default()) } else { change(new) };
        self.append(devices, body).await
    }

    async fn append(&self, devices: Vec<DeviceAddr>, change: pb::ProfileChange) -> Result<(), ServiceError> {
        if devices.is_empty() {
            return Ok(());
        }
        let now = self.d.clock.now_ms();
        let id = self.d.ids.next(now);
        let item = encode_item(id, now, inbox_item::Body::ProfileChange(change));
        for chunk in devices.chunks(ENTRIES_PER_APPEND_MAX) {
            let entries = entries_for(chunk.iter().copied(), &item);
            self.d.fanout.append(AppendRequest::event(id, now, entries)).await?;
        }
        Ok(())
    }
}

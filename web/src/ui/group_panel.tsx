// A group's panel: name, announcement mode and join approval (admins), members with their roles
// (admins can add, remove, promote and demote), requests to join (admins approve or decline),
// the invite link (admins create, copy, revoke), and leaving.

import { useEffect, useState } from 'preact/hooks';
import * as model from '../model';
import type { Chat } from '../model';
import type { GroupMemberAction } from '../proto';
import type { Session } from '../session';
import { Dialog, ErrorLine } from './dialog';
import { isPhone, normalisePhone } from './format';

const ROLE_NAME: Record<string, string> = {
  GROUP_ROLE_CREATOR: 'creator',
  GROUP_ROLE_ADMIN: 'admin',
  GROUP_ROLE_MEMBER: 'member',
};

export function GroupPanel(props: { session: Session; chat: Chat; onClose: () => void }) {
  const { session, chat } = props;
  const group = chat.group!;
  const groupId = chat.groupId!;
  const me = session.me.accountId;
  const admin = model.isAdminRole(model.myRole(chat, me));
  const [name, setName] = useState(group.name);
  const [phone, setPhone] = useState('');
  const [invite, setInvite] = useState('');
  const [error, setError] = useState('');

  useEffect(() => session.refreshGroup(groupId), [groupId]);

  const run = async (what: () => Promise<unknown>) => {
    setError('');
    try {
      await what();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const members = (action: GroupMemberAction, accountIds: string[]) => run(() => session.changeMembers(groupId, action, { accountIds }));
  const link = (token: string) => (token ? `${location.origin}/#join=${token}` : '');

  return (
    <Dialog title={group.name} onClose={props.onClose}>
      {admin && (
        <form onSubmit={(e) => { e.preventDefault(); run(() => session.updateGroup(groupId, { name: name.trim() })); }}>
          <label for="group-rename">Group name</label>
          <input id="group-rename" value={name} maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
          <button type="submit">Rename</button>
        </form>
      )}
      <label class="check">
        <input type="checkbox" checked={!!group.settings.adminsOnlySend} disabled={!admin}
          onChange={(e) => run(() => session.updateGroup(groupId, { settings: { ...group.settings, adminsOnlySend: e.currentTarget.checked } }))} />
        Only admins can send messages (announcements)
      </label>
      <label class="check">
        <input type="checkbox" checked={!!group.settings.joinApproval} disabled={!admin}
          onChange={(e) => run(() => session.updateGroup(groupId, { settings: { ...group.settings, joinApproval: e.currentTarget.checked } }))} />
        Joining by link waits for an admin's approval
      </label>

      <h3>{group.members.length} members</h3>
      <ul class="members">
        {group.members.map((m) => (
          <li key={m.accountId} data-account={m.accountId}>
            <span>{m.accountId === me ? `${m.phone} (you)` : m.phone}</span>
            <span class="role">{ROLE_NAME[m.role] ?? 'member'}</span>
            {admin && m.accountId !== me && m.role !== 'GROUP_ROLE_CREATOR' && (
              <span class="member-actions">
                {m.role === 'GROUP_ROLE_ADMIN' ? (
                  <button type="button" onClick={() => members('GROUP_MEMBER_ACTION_DEMOTE', [m.accountId])}>Dismiss as admin</button>
                ) : (
                  <button type="button" onClick={() => members('GROUP_MEMBER_ACTION_PROMOTE', [m.accountId])}>Make admin</button>
                )}
                <button type="button" class="danger" onClick={() => members('GROUP_MEMBER_ACTION_REMOVE', [m.accountId])}>Remove</button>
              </span>
            )}
          </li>
        ))}
      </ul>
      {admin && (group.pending ?? []).length > 0 && (
        <>
          <h3>Asking to join</h3>
          <ul class="requests">
            {group.pending!.map((id) => {
              const who = session.state.chats[model.directKey(id)]?.phone || `Account #${id}`;
              return (
                <li key={id} data-account={id}>
                  <span>{who}</span>
                  <span class="member-actions">
                    <button type="button" aria-label={`Approve ${who}`} onClick={() => run(() => session.answerJoinRequests(groupId, [id], false))}>Approve</button>
                    <button type="button" class="danger" aria-label={`Decline ${who}`} onClick={() => run(() => session.answerJoinRequests(groupId, [id], true))}>Decline</button>
                  </span>
                </li>
              );
            })}
          </ul>
        </>
      )}
      {admin && (
        <form onSubmit={(e) => {
          e.preventDefault();
          const number = normalisePhone(phone);
          if (!isPhone(number)) return setError('Enter the number in international format, e.g. +14155550123.');
          run(async () => { await session.changeMembers(groupId, 'GROUP_MEMBER_ACTION_ADD', { phones: [number] }); setPhone(''); });
        }}>
          <label for="group-add">Add a member by phone number</label>
          <input id="group-add" type="tel" value={phone} onInput={(e) => setPhone(e.currentTarget.value)} placeholder="+14155550123" />
          <button type="submit">Add</button>
        </form>
      )}

      {admin && (
        <div class="invite">
          <h3>Invite link</h3>
          {invite ? (
            <>
              <input readOnly value={link(invite)} aria-label="Invite link" onFocus={(e) => e.currentTarget.select()} />
              <button type="button" onClick={() => navigator.clipboard?.writeText(link(invite)).then(() => session.showNotice('info', 'Link copied.'), () => {})}>Copy</button>
              <button type="button" class="danger" onClick={() => run(async () => setInvite(await session.inviteLink(groupId, true)))}>Revoke link</button>
            </>
          ) : (
            <button type="button" onClick={() => run(async () => setInvite(await session.inviteLink(groupId)))}>Create invite link</button>
          )}
        </div>
      )}

      {!group.left && (
        <button type="button" class="danger" onClick={() => confirm(`Leave ${group.name}?`) && run(async () => { await session.leaveGroup(groupId); props.onClose(); })}>
          Leave group
        </button>
      )}
      <ErrorLine text={error} />
    </Dialog>
  );
}
